#!/bin/sh
# test_disk_full.sh - tallyd on a real file system that runs out of space.
#
# Makes a 32 MB ext4 image, mounts it (loop) as the server's --dir, puts a 4 MB ballast file
# on it, and starts tallyd with 2 MB memtables (so flushes run as well as WAL writes). Then:
# - known keys are written and acknowledged;
# - random 4 KB values are piped in 1 MB chunks (each on a new connection, cut off after a
#   few seconds if its replies are held) until a chunk gets an error: the disk is full;
# - while full: writes (SET of 60 KB values, INCR) answer errors, never an OK that is not
#   stored (every OK is checked after the restart), PING and GET still answer, the server
#   stays up;
# - killed (-9) and restarted while the disk is still full (128 KB freed for the new manifest
#   and WAL segment, far less than the 2 MB a memtable's table takes), tallyd starts (recovery
#   writes no table) and every acknowledged write reads back;
# - removing the ballast frees space: writes succeed again without a restart (the WAL repairs
#   itself, failed flushes are retried);
# - after a restart every acknowledged write is there, and `tallyctl verify --dir` passes.
# Prints the figures: errors answered while full, writes acknowledged, the failures the
# server logged (WAL write failures, repairs, flush and compaction failures).
#
# Skips (exit 77) when not root, without mkfs.ext4 or a loop device (mount -o loop fails),
# without redis-cli, or without io_uring. TALLYD and TALLYCTL name the binaries.
set -eu

IMAGE_MB=32
BALLAST_MB=4
RESERVE_KB=128 # freed for the restart on the full disk: a new manifest and WAL segment
FILL_CHUNKS=48 # of 1 MB: more than fits
CHUNK_VALUES=256
VALUE_BYTES=4000
BIG_VALUE_BYTES=60000
KNOWN_KEYS=50
FULL_WRITES=200 # of BIG_VALUE_BYTES: more than the free space and the memtables hold
CHUNK_TIMEOUT_S=4
RESUME_WAIT_TENTHS=100 # 10 s for writes to resume once space is freed
PROBE_TIMEOUT_S=2

skip() {
    echo "SKIP: $*"
    exit 77
}

command -v redis-cli >/dev/null 2>&1 || skip "redis-cli is not installed"
[ "${TALLY_TEST_SERVER:-}" != redis ] || skip "the disk-full test runs tallyd only"
[ "$(id -u)" = 0 ] || skip "mounting a file system image needs root"
command -v mkfs.ext4 >/dev/null 2>&1 || skip "mkfs.ext4 is not installed (e2fsprogs)"
command -v mount >/dev/null 2>&1 || skip "mount is not installed"

# shellcheck source=tests/server_lib.sh
. "$(dirname "$0")/server_lib.sh"
server_init diskfull

tallyctl=${TALLYCTL:-tools/tallyctl}
[ -x "$tallyctl" ] || {
    echo "tallyctl not found at $tallyctl: set TALLYCTL" >&2
    exit 1
}

mounted=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
    if [ -n "$mounted" ]; then
        umount "$tmp/data" 2>/dev/null || umount -l "$tmp/data" 2>/dev/null || true
    fi
    server_cleanup
}
trap cleanup EXIT

mkdir -p "$tmp/data"
truncate -s "${IMAGE_MB}M" "$tmp/disk.img"
mkfs.ext4 -F -q -m 0 "$tmp/disk.img" >/dev/null 2>&1 || skip "mkfs.ext4 failed on an image file"
mount -o loop "$tmp/disk.img" "$tmp/data" 2>"$tmp/mount.err" ||
    skip "cannot mount a loop image here ($(cat "$tmp/mount.err"))"
mounted=1
dd if=/dev/zero of="$tmp/data/ballast" bs=1M count="$BALLAST_MB" status=none
dd if=/dev/zero of="$tmp/data/reserve" bs=1K count="$RESERVE_KB" status=none
sync

real_server=$server_bin
server_bin=$tmp/tallyd-small
cat >"$server_bin" <<EOF
#!/bin/sh
exec "$real_server" "\$@" --memtable-bytes 2mb --max-value-bytes 64kb
EOF
chmod +x "$server_bin"

passed=0
failed=0
fail() {
    echo "FAIL: $*" >&2
    failed=$((failed + 1))
}
ok() {
    passed=$((passed + 1))
}

# The acknowledged writes: "key value" lines, checked after the restart.
acked=$tmp/acked
: >"$acked"
errors_while_full=0
acked_while_full=0

cli() {
    timeout "$PROBE_TIMEOUT_S" redis-cli -p "$port" "$@" 2>/dev/null || echo "(no reply)"
}

# set_acked KEY VALUE: SET, recording the key when acknowledged; prints the reply.
set_acked() {
    r=$(cli SET "$1" "$2")
    if [ "$r" = OK ]; then
        echo "$1 $2" >>"$acked"
    fi
    echo "$r"
}

server_start
for i in $(seq 1 "$KNOWN_KEYS"); do
    [ "$(set_acked "known$i" "v$i")" = OK ] || fail "SET known$i before the disk filled"
done

# Random values (they do not compress: the tables take real space), 1 MB a chunk.
head -c $((FILL_CHUNKS * CHUNK_VALUES * VALUE_BYTES * 3 / 4)) /dev/urandom |
    base64 -w "$VALUE_BYTES" |
    awk -v per="$CHUNK_VALUES" -v dir="$tmp" '{
        k = "fill" NR; f = sprintf("%s/chunk%03d", dir, int((NR - 1) / per))
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length($0), $0 > f
    }'
full=
chunk=0
while [ $chunk -lt $FILL_CHUNKS ]; do
    f=$(printf '%s/chunk%03d' "$tmp" "$chunk")
    timeout "$CHUNK_TIMEOUT_S" redis-cli -p "$port" --pipe <"$f" >"$tmp/fill.out" 2>&1 || true
    if grep -qE 'errors: [1-9]' "$tmp/fill.out"; then
        full=1
        errors_while_full=$((errors_while_full + 1))
        break
    fi
    chunk=$((chunk + 1))
done
if [ -z "$full" ]; then
    fail "no write answered an error after $FILL_CHUNKS MB ($(df -h "$tmp/data" | tail -n 1))"
else
    ok
fi
free_kb=$(df -k "$tmp/data" | awk 'NR == 2 { print $4 " KB free of " $2 }')
echo "disk full after $chunk MB: $free_kb"
big=$(head -c $((BIG_VALUE_BYTES * 3 / 4)) /dev/urandom | base64 -w 0)

# While full: writes answer errors or OK (each OK is checked after the restart), reads answer.
# A failed flush deletes its partial table, which may let a few writes through again; each
# one takes space (or a memtable slot), so errors come back within a bounded number.
full_errors=0
i=1
while [ $i -le $FULL_WRITES ] && [ $full_errors -lt 3 ]; do
    r=$(set_acked "during$i" "$big")
    case $r in
    OK) acked_while_full=$((acked_while_full + 1)) ;;
    "(no reply)") ;;
    *) full_errors=$((full_errors + 1)) ;;
    esac
    r=$(cli INCR "counter$i")
    case $r in
    1) echo "counter$i 1" >>"$acked" && acked_while_full=$((acked_while_full + 1)) ;;
    "(no reply)") ;;
    *) full_errors=$((full_errors + 1)) ;;
    esac
    i=$((i + 1))
done
errors_while_full=$((errors_while_full + full_errors))
if [ "$full_errors" -gt 0 ]; then
    ok
else
    fail "no write answered an error while the disk was full"
fi
if [ "$(cli PING)" = PONG ]; then ok; else fail "PING while the disk was full"; fi
if [ "$(cli GET known7)" = v7 ]; then ok; else fail "GET known7 while the disk was full"; fi
if kill -0 "$server_pid" 2>/dev/null; then ok; else fail "the server exited on a full disk"; fi

# check_acked WHEN: every acknowledged write reads back as acknowledged.
check_acked() {
    missing=0
    n_acked=0
    while read -r key value; do
        n_acked=$((n_acked + 1))
        have=$(cli GET "$key")
        if [ "$have" != "$value" ]; then
            [ $missing -lt 5 ] && echo "FAIL: $key acknowledged as '$value', $1 '$have'" >&2
            missing=$((missing + 1))
        fi
    done <"$acked"
    if [ $missing -eq 0 ]; then
        ok
    else
        fail "$missing of $n_acked acknowledged writes missing $1"
    fi
}

# A restart while the disk is still full: recovery writes no table (what it replays waits in
# memtables for the flush), so tallyd starts and reads answer what was acknowledged.
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
mv "$tmp/server.log" "$tmp/server-full.log"
# Opening writes a new manifest (a snapshot of the live tables, a few KB here) and a new WAL
# segment's header; it must not need room for tables (a memtable's worth, 2 MB here).
rm -f "$tmp/data/reserve"
echo "restart on the full disk: $(df -k "$tmp/data" | awk 'NR == 2 { print $4 " KB free" }')"
server_start
check_acked "after kill -9 and a restart on the full disk"
if [ "$(cli PING)" = PONG ]; then ok; else fail "PING after a restart on the full disk"; fi

# Freeing space lets writes resume, without a restart.
rm -f "$tmp/data/ballast"
sync
resumed=
i=0
while [ $i -lt $RESUME_WAIT_TENTHS ]; do
    if [ "$(set_acked "after$i" "a$i")" = OK ]; then
        resumed=1
        break
    fi
    sleep 0.1
    i=$((i + 1))
done
if [ -n "$resumed" ]; then
    ok
else
    fail "writes did not resume $((RESUME_WAIT_TENTHS / 10)) s after freeing $BALLAST_MB MB"
fi
for i in $(seq 1 20); do
    [ "$(set_acked "resumed$i" "r$i")" = OK ] || fail "SET resumed$i after space was freed"
done

# The failures the server met, from its logs (before and after the restart on the full disk).
cat "$tmp/server-full.log" "$tmp/server.log" >"$tmp/servers.log"
wal_failures=$(grep -c "WAL write failed" "$tmp/servers.log" || true)
wal_repairs=$(grep -c "WAL repaired" "$tmp/servers.log" || true)
bg_failures=$(grep -cE "(flush|compaction).* failed, retrying" "$tmp/servers.log" || true)

# Restart: every acknowledged write is there; the files verify.
server_stop || fail "tallyd exited with status $server_stop_rc at SIGTERM"
server_start
check_acked "after the restart"
server_stop || fail "tallyd exited with status $server_stop_rc at the second SIGTERM"
if "$tallyctl" verify --dir "$tmp/data" >"$tmp/verify.out" 2>&1; then
    ok
else
    fail "tallyctl verify --dir after the disk was full: $(tail -n 3 "$tmp/verify.out")"
fi

echo "figures: errors answered while full $errors_while_full," \
    "acknowledged while full $acked_while_full," \
    "acknowledged in all $n_acked; server log: WAL write failures $wal_failures, WAL repairs" \
    "$wal_repairs, flush/compaction failures $bg_failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
