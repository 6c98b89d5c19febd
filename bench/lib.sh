# lib.sh - what the benchmark scripts share (sourced, not run): the usage check, the tools
# and the tallyd binary, request counts scaled by SCALE, waiting for a server to answer, free
# loopback ports, and starting and stopping redis-server and tallyd. The sourcing script sets
# here (its folder) first; SCALE, START_WAIT_TENTHS and tmp (where NAME.log files and server
# directories go) before it calls these.

# parse_quick ARG: --quick sets one round and a tenth of the requests; anything else is usage.
parse_quick() {
    if [ "${1:-}" = --quick ]; then
        ROUNDS=1
        SCALE=0.1
    elif [ -n "${1:-}" ]; then
        echo "usage: $0 [--quick]" >&2
        exit 2
    fi
}

# require_tools HINT TOOL...: exits naming the packages (HINT) when a tool is missing.
require_tools() {
    hint=$1
    shift
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "$tool is not installed ($hint)" >&2
            exit 1
        fi
    done
}

# find_tallyd: sets tallyd to TALLYD or the build's server/tallyd.
find_tallyd() {
    tallyd=${TALLYD:-$here/../server/tallyd}
    if [ ! -x "$tallyd" ]; then
        echo "tallyd not found at $tallyd: build it (make) or set TALLYD" >&2
        exit 1
    fi
}

# requests N: N scaled by SCALE, at least 1000.
requests() {
    awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1000) v = 1000; print v }'
}

# wait_ready PID PORT NAME: waits until the server answers PING.
wait_ready() {
    i=0
    while [ $i -lt $START_WAIT_TENTHS ]; do
        if ! kill -0 "$1" 2>/dev/null; then
            echo "$3 exited at start:" >&2
            tail -n 20 "$tmp/$3.log" >&2
            exit 1
        fi
        if [ "$(redis-cli -p "$2" PING 2>/dev/null)" = PONG ]; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "$3 did not answer PING on port $2 within 10 s" >&2
    exit 1
}

# The port picker the shell tests use (outside the kernel's ephemeral range).
. "$here/../tests/server_lib.sh"

free_port() {
    while :; do
        p=$(server_pick_port)
        if ! redis-cli -p "$p" PING >/dev/null 2>&1; then
            echo "$p"
            return
        fi
    done
}

# start_redis NAME MODE [OPTION...]: redis-server with appendonly yes and appendfsync MODE, no
# RDB snapshots, in a fresh directory $tmp/NAME on a free port; sets redis_pid and redis_port.
start_redis() {
    srv_name=$1 srv_mode=$2
    shift 2
    rm -rf "${tmp:?}/$srv_name"
    mkdir -p "$tmp/$srv_name"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/$srv_name" --save '' \
        --appendonly yes --appendfsync "$srv_mode" --daemonize no "$@" \
        >"$tmp/$srv_name.log" 2>&1 &
    redis_pid=$!
    wait_ready "$redis_pid" "$redis_port" "$srv_name"
}

# start_tallyd NAME MODE: tallyd --fsync MODE with TALLYD_ARGS in a fresh directory $tmp/NAME on
# a free port; sets tally_pid and tally_port.
start_tallyd() {
    srv_name=$1 srv_mode=$2
    rm -rf "${tmp:?}/$srv_name"
    mkdir -p "$tmp/$srv_name"
    tally_port=$(free_port)
    # shellcheck disable=SC2086 # TALLYD_ARGS is a list of options
    "$tallyd" --port "$tally_port" --dir "$tmp/$srv_name" --fsync "$srv_mode" ${TALLYD_ARGS:-} \
        >"$tmp/$srv_name.log" 2>&1 &
    tally_pid=$!
    wait_ready "$tally_pid" "$tally_port" "$srv_name"
}

# make_tmp NAME: sets tmp to a fresh directory, removed at exit after the servers still running
# (redis_pid, tally_pid) are killed.
make_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-$1-XXXXXX")
    redis_pid=
    tally_pid=
    trap kill_servers_and_tmp EXIT
    trap 'exit 1' INT TERM
}

kill_servers_and_tmp() {
    for pid in $redis_pid $tally_pid; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}

# stop_pids PID...: SIGTERM, then waits for each (empty arguments are skipped).
stop_pids() {
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# An awk function for the result tables: median(key) of rps[key, 1..cnt[key]].
AWK_MEDIAN='
function median(key,    n, i, j, t, v) {
    n = cnt[key]
    for (i = 1; i <= n; i++) v[i] = rps[key, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((n + 1) / 2)]
}
'

# info_field PORT SECTION FIELD: one field of a server's INFO section.
info_field() {
    redis-cli -p "$1" INFO "$2" | tr -d '\r' | awk -F: -v f="$3" '$1 == f { print $2 }'
}
