#!/usr/bin/env bash
# crash-loop.sh - the long crash loop: tallyd (fsync always, 1 MiB memtables) killed with SIGKILL
# under pipelined load KILLS times (default 200), every acknowledged write checked after each
# restart. It runs tests/test_crash_loop from a build directory and builds nothing itself:
# build first (`make check TESTS=` builds the test programs and runs none), then run this.
#
# Usage: tests/crash-loop.sh [-k KILLS] [-b BUILD_DIR] [-s SEED] [-q]
#   -k  kills (default 200)
#   -b  build directory holding tests/test_crash_loop and server/tallyd (default: $TALLY_BUILDDIR,
#       else the current directory if it has them, else ./build beside this script's folder)
#   -s  seed, to replay a failure (default: the time)
#   -q  print only the summary, not a line per cycle
# Exit status: 0 when every check passed, 1 on a failure (the data directory is kept and named),
# 2 on a usage error or missing binaries, 77 when io_uring is unavailable.
set -euo pipefail

kills=200
seed=""
quiet=0
build="${TALLY_BUILDDIR:-}"
while getopts "k:b:s:qh" opt; do
    case "$opt" in
    k) kills="$OPTARG" ;;
    b) build="$OPTARG" ;;
    s) seed="$OPTARG" ;;
    q) quiet=1 ;;
    *)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
done
if ! [[ "$kills" =~ ^[1-9][0-9]*$ ]]; then
    echo "crash-loop.sh: -k wants a positive number of kills, not '$kills'" >&2
    exit 2
fi
if [ -z "$build" ]; then
    if [ -x tests/test_crash_loop ] && [ -x server/tallyd ]; then
        build=.
    else
        build="$(cd "$(dirname "$0")/.." && pwd)/build"
    fi
fi
program="$build/tests/test_crash_loop"
tallyd="$build/server/tallyd"
for f in "$program" "$tallyd"; do
    if [ ! -x "$f" ]; then
        echo "crash-loop.sh: $f not found: build first (make check TESTS= in $build)" >&2
        exit 2
    fi
done

export TALLYD
TALLYD="$(cd "$(dirname "$tallyd")" && pwd)/tallyd"
if [ -n "$seed" ]; then
    export TALLY_SEED="$seed"
fi
log="$(mktemp "${TMPDIR:-/tmp}/crash-loop.XXXXXX.log")"
echo "crash-loop.sh: $kills kills of $TALLYD; full output in $log"
status=0
if [ "$quiet" = 1 ]; then
    "$program" "$kills" >"$log" 2>&1 || status=$?
else
    set +e
    "$program" "$kills" 2>&1 | tee "$log" | grep -v '^crash loop:'
    status=${PIPESTATUS[0]}
    set -e
fi
cycles=$(grep -c '^cycle [0-9]*: killed' "$log" || true)
echo "crash-loop.sh: cycles completed: $cycles of $kills"
grep '^crash loop:' "$log" || true
case "$status" in
0) echo "crash-loop.sh: result: PASS" ;;
77) echo "crash-loop.sh: result: SKIP (io_uring unavailable)" ;;
*)
    grep -E '^FAIL|kept in' "$log" >&2 || true
    echo "crash-loop.sh: result: FAIL (status $status)"
    ;;
esac
exit "$status"
