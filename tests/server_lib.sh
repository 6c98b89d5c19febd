# shellcheck shell=sh
# server_lib.sh - starting and stopping the server under test, for the shell tests.
#
# Sourced by test_redis_cli.sh and test_redis_benchmark.sh (". "$(dirname "$0")/server_lib.sh""),
# after they have checked for their own tools. Provides:
# - server_init NAME: finds the server (TALLY_TEST_SERVER=redis: redis-server; else TALLYD,
#   server/tallyd, ../server/tallyd) into server_bin, exits 77 when io_uring is disabled, makes
#   the temporary directory tmp (tally-NAME-XXXXXX) and sets traps that call server_cleanup;
# - server_start: starts the server on a free loopback port outside the ephemeral range with
#   --dir $tmp/data and waits until it answers PING; sets port and server_pid. A start that
#   fails is retried on another port; a tallyd that cannot use io_uring exits 77;
# - server_stop: SIGTERM, then waits; returns the server's exit status;
# - server_cleanup: kills a server still running and removes tmp (a script with more to clean
#   sets its own EXIT trap and calls it from there);
# - check NAME EXPECTED GOT: a check that reports a difference and goes on, counting into
#   passed and failed.
# Needs redis-cli (for the PING).

SERVER_START_WAIT_TENTHS=100 # 10 s
SERVER_START_ATTEMPTS=5

server_init() {
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
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-$1-XXXXXX")
    server_pid=
    trap server_cleanup EXIT
    trap 'exit 1' INT TERM
}

server_cleanup() {
    if [ -n "$server_pid" ]; then
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}

# A port outside the kernel's ephemeral range, so that no client connection holds it.
server_pick_port() {
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

server_start() {
    mkdir -p "$tmp/data"
    attempt=1
    while [ $attempt -le $SERVER_START_ATTEMPTS ]; do
        port=$(server_pick_port)
        if [ "$server_bin" = redis-server ]; then
            redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/data" --save '' \
                --appendonly yes >"$tmp/server.log" 2>&1 &
        else
            "$server_bin" --port "$port" --dir "$tmp/data" >"$tmp/server.log" 2>&1 &
        fi
        server_pid=$!
        i=0
        while [ $i -lt $SERVER_START_WAIT_TENTHS ]; do
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
            echo "the server did not answer PING on port $port within" \
                "$((SERVER_START_WAIT_TENTHS / 10)) s" >&2
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
        attempt=$((attempt + 1))
    done
    exit 1
}

server_stop() {
    server_stop_rc=0
    kill "$server_pid"
    wait "$server_pid" || server_stop_rc=$?
    server_pid=
    return "$server_stop_rc"
}

# Checks that report and go on: check NAME EXPECTED GOT counts into passed and failed.
passed=0
failed=0
check() {
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n  expected: %s\n  got:      %s\n' "$1" "$2" "$3"
    fi
}
