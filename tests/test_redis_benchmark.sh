#!/bin/sh
# test_redis_benchmark.sh - redis-benchmark runs its PING, SET, GET, INCR and MSET tests against
# tallyd to the end, without an error.
#
# Starts tallyd on a free loopback port with a temporary --dir and runs
#   redis-benchmark -t ping,set,get,incr,mset -n 20000 -q
# (which first sends CONFIG GET save and CONFIG GET appendonly). Every test must print its
# "requests per second" line, and nothing may mention an error or a warning. This checks that
# the tool works, not how fast: bench/compare-redis.sh measures. Exits 77 when redis-benchmark
# is missing or the server cannot use io_uring. TALLYD names the binary (else server/tallyd,
# ../server/tallyd); TALLY_TEST_SERVER=redis runs it against redis-server instead.
set -eu

REQUESTS=20000
BENCH_TIMEOUT_S=300
EXPECTED_TESTS="PING_INLINE PING_MBULK SET GET INCR MSET"

if ! command -v redis-benchmark >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "SKIP: redis-benchmark or redis-cli is not installed"
    exit 77
fi

# shellcheck source=tests/server_lib.sh
. "$(dirname "$0")/server_lib.sh"
server_init redis-benchmark
server_start
echo "testing $server_bin on port $port"

if timeout "$BENCH_TIMEOUT_S" redis-benchmark -h 127.0.0.1 -p "$port" \
    -t ping,set,get,incr,mset -n "$REQUESTS" -q >"$tmp/bench.raw" 2>&1; then
    rc=0
else
    rc=$?
fi
# -q rewrites a progress line with \r; keep the final lines.
tr '\r' '\n' <"$tmp/bench.raw" | sed -e 's/^ *//' -e '/^$/d' >"$tmp/bench.out"
grep 'requests per second' "$tmp/bench.out" || true

passed=0
failed=0
if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL redis-benchmark exited with status $rc"
fi
for t in $EXPECTED_TESTS; do
    if grep -Eq "^$t( \([0-9]+ keys\))?: [0-9.]+ requests per second" "$tmp/bench.out"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL the $t test did not complete"
    fi
done
if grep -Eiq 'error|warning|ERR ' "$tmp/bench.out"; then
    failed=$((failed + 1))
    echo "FAIL redis-benchmark reported errors or warnings:"
    grep -Ei 'error|warning|ERR ' "$tmp/bench.out" | sort | uniq -c | head -n 10
else
    passed=$((passed + 1))
fi
if [ "$failed" -ne 0 ]; then
    echo "--- redis-benchmark's output:"
    tail -n 30 "$tmp/bench.out"
fi

if [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL the server does not answer PING after the benchmark"
fi
server_stop 2>/dev/null || true

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
