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
START_WAIT_TENTHS=100 # 10 s
EXPECTED_TESTS="PING_INLINE PING_MBULK SET GET INCR MSET"

if ! command -v redis-benchmark >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "SKIP: redis-benchmark or redis-cli is not installed"
    exit 77
fi

if [ "${TALLY_TEST_SERVER:-}" = redis ]; then
    server_bin=redis-server
elif [ -n "${TALLYD:-}" ]; then
    server_bin=$TALLYD
elif [ -x server/tallyd ]; then
    server_bin=server/tallyd
elif [ -x ../server/tallyd ]; then
    server_bin=../server/tallyd
else
    echo "tallyd not found: set TALLYD, or build server/tallyd" >&2
    exit 1
fi
if [ "$server_bin" != redis-server ] && [ -r /proc/sys/kernel/io_uring_disabled ] &&
    [ "$(cat /proc/sys/kernel/io_uring_disabled)" = 2 ]; then
    echo "SKIP: io_uring is disabled (kernel.io_uring_disabled = 2)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-redis-benchmark-XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# A port outside the kernel's ephemeral range, so that no client connection holds it.
pick_port() {
    range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo "32768 60999")
    low=${range%%[!0-9]*}
    high=${range##*[!0-9]}
    if [ "$low" -gt 11000 ]; then
        shuf -i "10000-$((low - 1))" -n 1
    elif [ "$high" -lt 64000 ]; then
        shuf -i "$((high + 1))-65535" -n 1
    else
        shuf -i 10000-60000 -n 1
    fi
}

# Starts the server on a random free port (tries a few); sets port and server_pid.
start_server() {
    mkdir -p "$tmp/data"
    for attempt in 1 2 3 4 5; do
        port=$(pick_port)
        if [ "$server_bin" = redis-server ]; then
            redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/data" --save '' \
                --appendonly yes >"$tmp/server.log" 2>&1 &
        else
            "$server_bin" --port "$port" --dir "$tmp/data" >"$tmp/server.log" 2>&1 &
        fi
        server_pid=$!
        i=0
        while [ $i -lt $START_WAIT_TENTHS ]; do
            if ! kill -0 "$server_pid" 2>/dev/null; then
                break
            fi
            if [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; then
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "the server did not answer PING on port $port within 10 s" >&2
            tail -n 20 "$tmp/server.log" >&2
            exit 1
        fi
        wait "$server_pid" 2>/dev/null || true
        server_pid=
        if grep -qE 'io_uring is required|cannot set up io_uring' "$tmp/server.log"; then
            tail -n 5 "$tmp/server.log"
            echo "SKIP: the server cannot use io_uring here"
            exit 77
        fi
        echo "start attempt $attempt on port $port failed:" >&2
        tail -n 5 "$tmp/server.log" >&2
    done
    exit 1
}

start_server
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
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
