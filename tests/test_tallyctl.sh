#!/bin/sh
# test_tallyctl.sh - tallyctl against a live tallyd and on its data directory.
#
# Starts tallyd on a free loopback port (small memtables, so that 30,000 SETs make level-0
# tables), writes keys with redis-cli --pipe, then checks:
# - usage errors exit 2 (no command, unknown command or option, bad --level, missing operands);
# - stats shows the levels table, with the level-0 tables the writes made;
# - compact --wait moves every table to the bottom level (L0..L5 empty, L6 holds them all) and
#   prints plain progress lines off a terminal; compact --level 0 without --wait returns at once
#   and compact --status then reports it done; compact --range works; the server's errors for
#   a bad checkpoint destination (relative, existing) reach the user;
# - checkpoint DEST, then a second tallyd with --dir DEST answers the same value for every key
#   (30,000 strings and 500 counters) and not a key written after the checkpoint;
# - with the server stopped: verify passes; manifest lists the tables; sst dump shows the
#   properties and, with --keys --limit, exactly that many entries; compact --dir compacts (and
#   is refused with the server running); the data is intact after a restart;
# - verify fails, naming the file and offset, after a byte inside a data block is flipped; and
#   names an unlisted .sst and a listed table that is missing.
# Exits 77 when redis-cli is missing or io_uring is unavailable. TALLYD and TALLYCTL name the
# binaries (else server/tallyd and tools/tallyctl from here or ..). Ends "N passed, M failed".
set -eu

STRING_KEYS=30000
COUNTER_KEYS=500
STATUS_WAIT_TENTHS=100 # 10 s for a background compaction to finish

if ! command -v redis-cli >/dev/null 2>&1; then
    echo "SKIP: redis-cli is not installed"
    exit 77
fi
if [ "${TALLY_TEST_SERVER:-}" = redis ]; then
    echo "SKIP: tallyctl needs tallyd's own commands"
    exit 77
fi

# shellcheck source=tests/server_lib.sh
. "$(dirname "$0")/server_lib.sh"
server_init tallyctl

if [ -n "${TALLYCTL:-}" ]; then
    tallyctl=$TALLYCTL
elif [ -x tools/tallyctl ]; then
    tallyctl=tools/tallyctl
elif [ -x ../tools/tallyctl ]; then
    tallyctl=../tools/tallyctl
else
    echo "tallyctl not found: set TALLYCTL, or build tools/tallyctl" >&2
    exit 1
fi

# server_start runs "$server_bin --port P --dir $tmp/data": this wrapper adds small memtables,
# and TALLYD_EXTRA (a later --dir wins) for the server started on the checkpoint.
real_server=$server_bin
server_bin=$tmp/tallyd-small
cat >"$server_bin" <<EOF
#!/bin/sh
exec "$real_server" "\$@" --memtable-bytes 1mb --max-value-bytes 64kb \${TALLYD_EXTRA:-}
EOF
chmod +x "$server_bin"

first_pid=
cleanup() {
    if [ -n "$first_pid" ]; then
        kill -9 "$first_pid" 2>/dev/null || true
    fi
    server_cleanup
}
trap cleanup EXIT

# check_contains NAME TEXT PATTERN (a grep -E pattern)
check_contains() {
    if printf '%s\n' "$2" | grep -qE -- "$3"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n  expected a line matching: %s\n  got:\n%s\n' "$1" "$3" "$2"
    fi
}
# run ARGS...: runs tallyctl; its exit status in $rc, its stdout and stderr in $out
run() {
    rc=0
    out=$("$tallyctl" "$@" 2>&1) || rc=$?
}
cli() {
    redis-cli -p "$port" "$@"
}
ctl() {
    "$tallyctl" -p "$port" "$@"
}
# files_in LEVELS...: the number of tables in those levels, from tallyctl stats
files_in() {
    ctl stats | awk -v levels=" $* " '$1 ~ /^L[0-9]$/ && index(levels, " " substr($1, 2) " ") { n += $2 } END { print n + 0 }'
}
# all_values: GET of every key written, one value a line
all_values() {
    {
        seq -f 'GET key:%06g' 1 "$STRING_KEYS"
        seq -f 'GET cnt:%04g' 1 "$COUNTER_KEYS"
        echo 'GET after-checkpoint'
    } | cli
}

# ---- usage errors
run
check "no command exits 2" 2 "$rc"
run frobnicate
check "unknown command exits 2" 2 "$rc"
check_contains "unknown command prints usage" "$out" '^usage: tallyctl'
run -x stats
check "unknown option exits 2" 2 "$rc"
run -p
check "-p without a value exits 2" 2 "$rc"
run -p 70000 stats
check "-p 70000 exits 2" 2 "$rc"
run compact --level 9
check "compact --level 9 exits 2" 2 "$rc"
run compact --level x
check "compact --level x exits 2" 2 "$rc"
run compact --range a
check "compact --range with one key exits 2" 2 "$rc"
run compact --dir "$tmp" --range a b
check "compact --dir with --range exits 2" 2 "$rc"
run sst
check "sst without dump exits 2" 2 "$rc"
run sst dump
check "sst dump without a file exits 2" 2 "$rc"
run verify
check "verify without a directory exits 2" 2 "$rc"
run manifest
check "manifest without a directory exits 2" 2 "$rc"
run checkpoint
check "checkpoint without a destination exits 2" 2 "$rc"
run stats extra
check "stats with an argument exits 2" 2 "$rc"
run --help
check "--help exits 0" 0 "$rc"

server_start
echo "testing $real_server on port $port with $tallyctl"

# ---- data: strings and counters
awk -v n="$STRING_KEYS" 'BEGIN {
    for (i = 1; i <= n; i++)
        printf "SET key:%06d value-%06d-abcdefghijklmnopqrstuvwxyz0123456789\n", i, i
}' | cli --pipe >"$tmp/pipe.out" 2>&1
check_contains "redis-cli --pipe of $STRING_KEYS SETs" "$(cat "$tmp/pipe.out")" \
    "errors: 0, replies: $STRING_KEYS"
for round in 1 2 3; do
    seq -f 'INCRBY cnt:%04g 7' 1 "$COUNTER_KEYS"
done | cli >/dev/null
check "a counter after three INCRBY 7" 21 "$(cli GET cnt:0042)"

# ---- stats
run -p "$port" stats
check "stats exits 0" 0 "$rc"
check_contains "stats has the levels header" "$out" '^level +files +bytes +raw bytes +ratio +keys'
check_contains "stats has a level-6 line" "$out" '^L6 '
check_contains "stats shows write amplification" "$out" '^write amplification: [0-9]'
check_contains "stats shows the block cache" "$out" '^block cache: '
l0_to_l5=$(files_in 0 1 2 3 4 5)
if [ "$l0_to_l5" -gt 0 ]; then
    check "the writes made tables in L0..L5" yes yes
else
    check "the writes made tables in L0..L5" "more than 0" "$l0_to_l5"
fi
check "nothing is in L6 before a manual compaction" 0 "$(files_in 6)"

# ---- compact on the live server
run -p "$port" compact --wait
check "compact --wait exits 0" 0 "$rc"
check_contains "compact --wait reports the compaction done" "$out" '^compaction [0-9]+ done: '
check_contains "compact --wait prints progress lines off a terminal" "$out" '^compact: 100% '
check "after compact --wait, L0..L5 are empty" 0 "$(files_in 0 1 2 3 4 5)"
l6=$(files_in 6)
if [ "$l6" -gt 0 ]; then
    check "after compact --wait, L6 holds the tables" yes yes
else
    check "after compact --wait, L6 holds the tables" "more than 0" "$l6"
fi
check "a value after compaction" value-012345-abcdefghijklmnopqrstuvwxyz0123456789 \
    "$(cli GET key:012345)"

run -p "$port" compact --level 0
check "compact --level 0 without --wait exits 0" 0 "$rc"
check_contains "compact without --wait says it started" "$out" '^compaction [0-9]+ started on '
i=0
while [ $i -lt $STATUS_WAIT_TENTHS ]; do
    st=$(ctl compact --status)
    case $st in
    *running*) ;;
    *) break ;;
    esac
    sleep 0.1
    i=$((i + 1))
done
check_contains "compact --status reports the level-0 compaction done" "$st" '^compaction [0-9]+: done, '
run -p "$port" compact --range key:000100 key:000200 --wait
check "compact --range --wait exits 0" 0 "$rc"
check "a value in the compacted range" value-000150-abcdefghijklmnopqrstuvwxyz0123456789 \
    "$(cli GET key:000150)"
check_contains "TALLY COMPACT with a bad LEVEL is refused" "$(cli TALLY COMPACT LEVEL 99 2>&1)" \
    'ERR LEVEL must be an integer from 0 to 6'
check_contains "TALLY COMPACT with junk is a syntax error" "$(cli TALLY COMPACT junk 2>&1)" \
    'ERR syntax error'

# ---- checkpoint, and a second server on it
cli SET late-key late-value >/dev/null # in the memtable only: the checkpoint must flush it
run -p "$port" checkpoint "$tmp/ckpt"
check "checkpoint exits 0" 0 "$rc"
check_contains "checkpoint names the destination" "$out" "written to $tmp/ckpt"
run -p "$port" checkpoint "$tmp/ckpt"
check "checkpoint to an existing directory exits 1" 1 "$rc"
check_contains "checkpoint to an existing directory says so" "$out" 'already exists'
check_contains "TALLY CHECKPOINT of a relative path is refused" \
    "$(cli TALLY CHECKPOINT relative/dir 2>&1)" "is not an absolute path"
cli SET after-checkpoint yes >/dev/null
all_values >"$tmp/values-first"
first_dbsize=$(cli DBSIZE)

first_pid=$server_pid
first_port=$port
TALLYD_EXTRA="--dir $tmp/ckpt"
export TALLYD_EXTRA
server_start
unset TALLYD_EXTRA
check "the checkpoint server serves from the checkpoint" "$tmp/ckpt" "$(cli CONFIG GET dir | tail -n 1)"
all_values >"$tmp/values-ckpt"
check "the checkpoint lacks the key written after it" "" "$(cli GET after-checkpoint)"
check "the checkpoint has the key from the memtable" late-value "$(cli GET late-key)"
check "the checkpoint has one key less" "$((first_dbsize - 1))" "$(cli DBSIZE)"
# Every other value is the same: drop the last line (after-checkpoint) of both.
if cmp -s "$tmp/values-first" "$tmp/values-ckpt"; then
    check "values differ only in after-checkpoint" "a difference" "none"
else
    sed '$d' "$tmp/values-first" >"$tmp/a"
    sed '$d' "$tmp/values-ckpt" >"$tmp/b"
    check "every value of the checkpoint equals the original's" same \
        "$(cmp -s "$tmp/a" "$tmp/b" && echo same || diff "$tmp/a" "$tmp/b" | head -n 5)"
fi
check "values read: $STRING_KEYS strings, $COUNTER_KEYS counters, 1 more" \
    $((STRING_KEYS + COUNTER_KEYS + 1)) "$(wc -l <"$tmp/values-ckpt" | tr -d ' ')"
server_stop || true
server_pid=$first_pid
port=$first_port
first_pid=

# ---- offline: refused while the server runs, then on the stopped directory
run compact --dir "$tmp/data"
check "compact --dir on a running server's directory exits 1" 1 "$rc"
check_contains "compact --dir explains the lock" "$out" 'in use by another process'
server_stop
run verify --dir "$tmp/data"
check "verify passes on the stopped directory" 0 "$rc"
check_contains "verify says all is well" "$out" 'every checksum matches'
check_contains "verify prints progress lines" "$out" '^verify: 100% '
run manifest --dir "$tmp/data"
check "manifest exits 0" 0 "$rc"
check_contains "manifest shows the next file number" "$out" '^next file number: +[0-9]+'
check_contains "manifest shows the last sequence" "$out" '^last sequence: +[0-9]+'
check_contains "manifest lists level 6" "$out" '^level 6: [0-9]+ tables'
table=$(ls "$tmp/data" | grep -E '^[0-9]+\.sst$' | head -n 1)
run sst dump "$tmp/data/$table"
check "sst dump exits 0" 0 "$rc"
check_contains "sst dump shows the entries" "$out" '^entries: +[0-9]+'
check_contains "sst dump shows the smallest key" "$out" '^smallest key: +"'
run sst dump "$tmp/data/$table" --keys --limit 5
check "sst dump --keys --limit 5 exits 0" 0 "$rc"
check "sst dump --keys --limit 5 shows 5 entries" 5 "$(printf '%s\n' "$out" | grep -c '^"')"
run sst dump "$tmp/no-such.sst"
check "sst dump of a missing file exits 1" 1 "$rc"
run verify --dir "$tmp"
check "verify of a directory that is not a database exits 1" 1 "$rc"

run compact --dir "$tmp/data"
check "compact --dir exits 0" 0 "$rc"
check_contains "compact --dir prints progress lines" "$out" '^compact: 100% '
run verify --dir "$tmp/data"
check "verify passes after compact --dir" 0 "$rc"
check "manifest after compact --dir" "level 6" \
    "$("$tallyctl" manifest --dir "$tmp/data" | grep -E '^level [0-9]' | cut -d: -f1 | sort -u | tr '\n' ' ' | sed 's/ $//')"

# ---- corruption
cp -r "$tmp/data" "$tmp/bad"
table=$(ls "$tmp/bad" | grep -E '^[0-9]+\.sst$' | head -n 1)
# Offset 100 is inside the first data block: blocks start at 0 and are over 100 bytes.
printf '\377' | dd of="$tmp/bad/$table" bs=1 seek=100 conv=notrunc 2>/dev/null
run verify --dir "$tmp/bad"
check "verify fails on a flipped byte" 1 "$rc"
check_contains "verify names the corrupt table and the offset" "$out" \
    "^problem: $tmp/bad/$table: data block at offset [0-9]+"
cp -r "$tmp/data" "$tmp/extra"
touch "$tmp/extra/999999.sst"
run verify --dir "$tmp/extra"
check "verify fails on an unlisted table" 1 "$rc"
check_contains "verify names the unlisted table" "$out" "^problem: $tmp/extra/999999.sst: "
cp -r "$tmp/data" "$tmp/missing"
rm "$tmp/missing/$table"
run verify --dir "$tmp/missing"
check "verify fails on a missing table" 1 "$rc"
check_contains "verify names the missing table" "$out" "^problem: $tmp/missing/$table: listed in level"

# ---- the data survives the offline compaction
server_start
check "a value after compact --dir and a restart" value-029999-abcdefghijklmnopqrstuvwxyz0123456789 \
    "$(cli GET key:029999)"
check "a counter after compact --dir and a restart" 21 "$(cli GET cnt:0500)"
server_stop

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
