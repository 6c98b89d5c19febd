# lib.sh - what the benchmark scripts share (sourced, not run): the usage check, the tools
# and the tallyd binary, request counts scaled by SCALE, waiting for a server to answer, and
# free loopback ports. The sourcing script sets here (its folder) first; SCALE,
# START_WAIT_TENTHS and tmp (where NAME.log files are) before it calls these.

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


# An awk function for the result tables: median(key) of rps[key, 1..cnt[key]].
AWK_MEDIAN='
function median(key,    n, i, j, t, v) {
    n = cnt[key]
    for (i = 1; i <= n; i++) v[i] = rps[key, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((n + 1) / 2)]
}
'
