#!/bin/sh
# test_redis_cli.sh - redis-cli works against tallyd: one-shot, --pipe and interactively.
#
# Starts tallyd on a free loopback port with a temporary --dir, then:
# - one-shot commands: INCR, GET, SET with EX/NX/XX/GET, TTL, MGET, DEL, an error reply,
#   commands read from standard input, and INFO storage;
# - --pipe mass insertion of 1,000,000 INCRBY commands over 1,000 keys (the RESP stream is made
#   with awk): redis-cli must report "errors: 0, replies: 1000000", and every key must hold
#   exactly the sum of its increments (1999);
# - interactive mode in a tmux pane (skipped when tmux is missing): "SET ik iv" shows OK and
#   "GET ik" shows "iv", then quit.
# Exits 77 when redis-cli is missing or the server cannot use io_uring. Ends with
# "N passed, M failed". TALLYD names the binary (else server/tallyd, ../server/tallyd);
# TALLY_TEST_SERVER=redis runs the same checks against redis-server, to check the test itself.
set -eu

PIPE_COMMANDS=1000000
PIPE_KEYS=1000
PIPE_TIMEOUT_S=180
TMUX_WAIT_TENTHS=50   # 5 s per step

if ! command -v redis-cli >/dev/null 2>&1; then
    echo "SKIP: redis-cli is not installed"
    exit 77
fi

# shellcheck source=tests/server_lib.sh
. "$(dirname "$0")/server_lib.sh"
server_init redis-cli
tmux_sock="tally-test-$$"
cleanup() {
    if command -v tmux >/dev/null 2>&1; then
        tmux -L "$tmux_sock" kill-server 2>/dev/null || true
    fi
    server_cleanup
}
trap cleanup EXIT

cli() {
    redis-cli -p "$port" "$@"
}

server_start
echo "testing $server_bin on port $port"

# ---- one-shot commands
check "INCR hits" 1 "$(cli INCR hits)"
check "INCR hits (again)" 2 "$(cli INCR hits)"
check "GET hits" 2 "$(cli GET hits)"
check "INCRBY hits 40" 42 "$(cli INCRBY hits 40)"
check "SET k v EX 100" OK "$(cli SET k v EX 100)"
ttl=$(cli TTL k)
case $ttl in
99 | 100) check "TTL k" ok ok ;;
*) check "TTL k" "99 or 100" "$ttl" ;;
esac
check "SET k v2 NX (nil)" "" "$(cli SET k v2 NX)"
check "SET k v3 XX GET" v "$(cli SET k v3 XX GET)"
check "GET k" v3 "$(cli GET k)"
check "SET 'a b' with spaces" OK "$(cli SET spaced 'a b')"
check "GET spaced" "a b" "$(cli GET spaced)"
check "MGET hits nope k" "$(printf '42\n\nv3')" "$(cli MGET hits nope k)"
check "INCR k (error)" "ERR value is not an integer or out of range" "$(cli INCR k 2>&1)"
check "INCR (arity error)" "ERR wrong number of arguments for 'incr' command" "$(cli INCR 2>&1)"
check "DEL k spaced" 2 "$(cli DEL k spaced)"
check "commands from stdin" "$(printf '43\n44')" "$(printf 'INCR hits\nINCR hits\n' | cli)"
if [ "$server_bin" != redis-server ]; then
    info=$(cli INFO storage | tr -d '\r')
    case $info in
    "# Storage"*) check "INFO storage" ok ok ;;
    *) check "INFO storage starts with # Storage" "# Storage..." "$(echo "$info" | head -n 3)" ;;
    esac
fi

# ---- --pipe: a million INCRBY commands
awk -v n="$PIPE_COMMANDS" -v keys="$PIPE_KEYS" 'BEGIN {
    for (i = 0; i < n; i++) {
        k = "pipe:" (i % keys)
        d = 1 + int(i / keys) % 3
        printf "*3\r\n$6\r\nINCRBY\r\n$%d\r\n%s\r\n$1\r\n%d\r\n", length(k), k, d
    }
}' >"$tmp/pipe.resp"
start_s=$(date +%s)
if timeout "$PIPE_TIMEOUT_S" redis-cli -p "$port" --pipe <"$tmp/pipe.resp" >"$tmp/pipe.out" 2>&1
then
    pipe_rc=0
else
    pipe_rc=$?
fi
end_s=$(date +%s)
echo "--pipe: $PIPE_COMMANDS INCRBY in $((end_s - start_s)) s"
check "redis-cli --pipe exit status" 0 "$pipe_rc"
check "redis-cli --pipe summary" "errors: 0, replies: $PIPE_COMMANDS" \
    "$(grep -o 'errors: [0-9]*, replies: [0-9]*' "$tmp/pipe.out" || tail -n 3 "$tmp/pipe.out")"
# Key i gets the deltas 1 + (m % 3) for m = 0..999: 1000 + 333 * (0 + 1 + 2) = 1999.
values=$(cli MGET $(seq -f 'pipe:%g' 0 $((PIPE_KEYS - 1))) | sort | uniq -c | sed 's/^ *//')
check "every pipe:N key after --pipe" "$PIPE_KEYS 1999" "$values"

# ---- interactive, in tmux
if command -v tmux >/dev/null 2>&1; then
    # wait_pane TEXT: polls the pane until it shows TEXT (bounded); returns 1 if it never does.
    wait_pane() {
        i=0
        while [ $i -lt $TMUX_WAIT_TENTHS ]; do
            if tmux -L "$tmux_sock" capture-pane -p -t cli | grep -qF -- "$1"; then
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        return 1
    }
    tmux -L "$tmux_sock" -f /dev/null new-session -d -s cli -x 120 -y 30 \
        "redis-cli -p $port; sleep 2"
    if wait_pane "127.0.0.1:$port>"; then
        check "interactive prompt" ok ok
    else
        check "interactive prompt" "127.0.0.1:$port>" "$(tmux -L "$tmux_sock" capture-pane -p -t cli)"
    fi
    tmux -L "$tmux_sock" send-keys -t cli 'SET ik iv' Enter
    if wait_pane "OK"; then
        check "interactive SET ik iv shows OK" ok ok
    else
        check "interactive SET ik iv shows OK" OK "$(tmux -L "$tmux_sock" capture-pane -p -t cli)"
    fi
    tmux -L "$tmux_sock" send-keys -t cli 'GET ik' Enter
    if wait_pane '"iv"'; then
        check "interactive GET ik shows \"iv\"" ok ok
    else
        check "interactive GET ik shows \"iv\"" '"iv"' \
            "$(tmux -L "$tmux_sock" capture-pane -p -t cli)"
    fi
    tmux -L "$tmux_sock" send-keys -t cli 'INCR' Enter
    if wait_pane "(error) ERR wrong number of arguments for 'incr' command"; then
        check "interactive error reply" ok ok
    else
        check "interactive error reply" "(error) ERR wrong number of arguments..." \
            "$(tmux -L "$tmux_sock" capture-pane -p -t cli)"
    fi
    echo "--- the pane:"
    tmux -L "$tmux_sock" capture-pane -p -t cli | sed '/^$/d'
    tmux -L "$tmux_sock" send-keys -t cli 'quit' Enter
    sleep 0.3
    tmux -L "$tmux_sock" kill-server 2>/dev/null || true
else
    echo "skipped: interactive mode (tmux is not installed)"
fi
check "GET ik after the interactive session" iv "$(cli GET ik)"

stop_rc=0
server_stop || stop_rc=$?
check "the server exits 0 on SIGTERM" 0 "$stop_rc"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
