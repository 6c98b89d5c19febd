#!/usr/bin/env bash
# test_fuzz_resp.sh - a short libFuzzer run of the RESP request parser (tests/fuzz_resp.c),
# built with clang's fuzzer, AddressSanitizer and UBSan. Any crash, leak or sanitizer report
# fails the test. Skips (77) where clang or its fuzzer runtime is missing.
# Environment: CC_FUZZ (clang), TALLY_SRCDIR, FUZZ_SECONDS (default 20).
set -eu -o pipefail
src=${TALLY_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cc=${CC_FUZZ:-}
[ -n "$cc" ] || cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
    echo "SKIP: clang is not installed (apt-get install clang)"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tally-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! "$cc" -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/server" -I"$src/storage" "$src/tests/fuzz_resp.c" "$src/server/resp.c" \
    "$src/server/buf.c" -o "$work/fuzz_resp" 2>"$work/build.log"; then
    if grep -q "libclang_rt.fuzzer\|cannot find.*fuzzer" "$work/build.log"; then
        echo "SKIP: clang's libFuzzer runtime is missing (apt-get install libclang-rt-14-dev)"
        exit 77
    fi
    cat "$work/build.log"
    exit 1
fi
mkdir -p "$work/corpus"
cp "$src"/tests/fuzz_resp_corpus/* "$work/corpus/" 2>/dev/null || true
# A crash must fail the test: libFuzzer's own exit code for one (77) would read as SKIP.
status=0
"$work/fuzz_resp" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=1024 \
    -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 "$work/corpus" \
    >"$work/fuzz.log" 2>&1 || status=$?
tail -15 "$work/fuzz.log"
exit $status
