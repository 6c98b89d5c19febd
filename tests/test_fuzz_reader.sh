#!/usr/bin/env bash
# test_fuzz_reader.sh - a short libFuzzer run of libtally's reply reader (tests/fuzz_reader.c):
# every input is read in pieces and whole, and both must agree. Built with clang's fuzzer,
# AddressSanitizer and UBSan; any crash, leak, disagreement or sanitizer report fails the test.
# Skips (77) where clang or its fuzzer runtime is missing.
# Environment: CC_FUZZ (clang), TALLY_SRCDIR, FUZZ_SECONDS (default 20).
set -eu -o pipefail
src=${TALLY_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cc=${CC_FUZZ:-}
[ -n "$cc" ] || cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
    echo "SKIP: clang is not installed (apt-get install clang)"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tally-fuzz-reader-XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! "$cc" -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/client" -I"$src/tests" "$src/tests/fuzz_reader.c" "$src"/client/*.c -lm \
    -o "$work/fuzz_reader" 2>"$work/build.log"; then
    if grep -q "libclang_rt.fuzzer\|cannot find.*fuzzer" "$work/build.log"; then
        echo "SKIP: clang's libFuzzer runtime is missing (apt-get install libclang-rt-14-dev)"
        exit 77
    fi
    cat "$work/build.log"
    exit 1
fi
mkdir -p "$work/corpus"
cp "$src"/tests/fuzz_reader_corpus/* "$work/corpus/" 2>/dev/null || true
# libFuzzer's own failure status is 77, which automake would count as a skip: ask for 1. A
# failing input is kept in the build directory as fuzz_reader-crash-*.
"$work/fuzz_reader" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=1024 \
    -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$PWD/fuzz_reader-" \
    -print_final_stats=1 "$work/corpus" 2>&1 | tail -15
