# fuzz_lib.sh - sourced by tests/test_fuzz_*.sh: builds one libFuzzer target with clang
# (-fsanitize=fuzzer,address,undefined) and runs it for FUZZ_SECONDS over a copy of its seed
# corpus. A crash, leak, timeout or sanitizer report fails the run, and the failing input is
# kept in the current directory as NAME-crash-* (or -leak-, -timeout-, -oom-). The number of
# inputs run (libFuzzer's stat::number_of_executed_units) is printed.
#
# Skips (exit 77) where clang or its fuzzer runtime is missing, or where the target itself
# says SKIP (io_uring unavailable). libFuzzer's own exit code for a bug is 77 too, which
# automake would count as a skip: the run asks for 1 instead.
#
# Environment: CC_FUZZ (clang), TALLY_SRCDIR, FUZZ_SECONDS (default 5), FUZZ_ENGINE_LIBS (the
# link flags of liburing, lz4 and zstd; configure passes them), FUZZ_SUMMARY (a file each run
# appends its line of figures to: make fuzz), TMPDIR.
set -eu -o pipefail

fuzz_src=${TALLY_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
fuzz_cc=${CC_FUZZ:-}
[ -n "$fuzz_cc" ] || fuzz_cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$fuzz_cc" ]; then
    echo "SKIP: clang is not installed (apt-get install clang)"
    exit 77
fi
# Scratch files of the targets go to memory where there is some: the manifest target syncs.
fuzz_tmp=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && fuzz_tmp=/dev/shm
fuzz_work=$(mktemp -d "$fuzz_tmp/tally-fuzz-XXXXXX")
trap 'rm -rf "$fuzz_work"' EXIT

FUZZ_CFLAGS="-g -O1 -std=gnu11 -pthread -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=undefined"
# The libraries of the engine's sources, for the targets of the on-disk readers.
FUZZ_ENGINE_LIBS=${FUZZ_ENGINE_LIBS:--luring -llz4 -lzstd}

# fuzz_build NAME CLANG-ARGUMENTS...: builds $fuzz_work/NAME.
fuzz_build() {
    local name=$1
    shift
    # shellcheck disable=SC2086 # FUZZ_CFLAGS is a list of flags
    if ! "$fuzz_cc" $FUZZ_CFLAGS "$@" -o "$fuzz_work/$name" 2>"$fuzz_work/build.log"; then
        if grep -q "libclang_rt.fuzzer\|cannot find.*fuzzer" "$fuzz_work/build.log"; then
            echo "SKIP: clang's libFuzzer runtime is missing (apt-get install libclang-rt-14-dev)"
            exit 77
        fi
        cat "$fuzz_work/build.log"
        exit 1
    fi
}

# fuzz_build_engine NAME MODULE...: builds tests/NAME.c with storage/MODULE.c for each module
# (only what the reader needs: the rest of the engine need not even compile meanwhile).
fuzz_build_engine() {
    local name=$1 sources=() m
    shift
    for m in "$@"; do
        sources+=("$fuzz_src/storage/$m.c")
    done
    # shellcheck disable=SC2086 # FUZZ_ENGINE_LIBS is a list of flags
    fuzz_build "$name" -I"$fuzz_src/storage" -I"$fuzz_src/tests" "$fuzz_src/tests/$name.c" \
        "${sources[@]}" $FUZZ_ENGINE_LIBS -lm
}

# fuzz_run NAME CORPUS-DIR: runs $fuzz_work/NAME over a copy of the corpus; returns its status.
fuzz_run() {
    local name=$1 corpus=$2 seconds=${FUZZ_SECONDS:-5} status=0
    mkdir -p "$fuzz_work/corpus-$name"
    cp "$corpus"/* "$fuzz_work/corpus-$name/" 2>/dev/null || true
    TMPDIR=$fuzz_work "$fuzz_work/$name" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
        -artifact_prefix="$PWD/$name-" -print_final_stats=1 "$fuzz_work/corpus-$name" \
        >"$fuzz_work/$name.log" 2>&1 || status=$?
    sed "/# Uses: /d" "$fuzz_work/$name.log" | tail -15
    if [ "$status" = 77 ] && ! grep -q '^SKIP: ' "$fuzz_work/$name.log"; then
        status=1
    fi
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzz_work/$name.log")
    local summary="$name: ${runs:-no} executions in ${seconds} s (status $status)"
    echo "$summary"
    if [ -n "${FUZZ_SUMMARY:-}" ]; then
        echo "$summary" >>"$FUZZ_SUMMARY"
    fi
    return "$status"
}
