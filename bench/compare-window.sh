#!/bin/sh
# compare-window.sh - WINCRBY against plain INCR on the same tallyd, with redis-benchmark.
#
# Starts tallyd (--fsync everysec, TALLYD_ARGS) on a free loopback port with a fresh directory
# and runs, alternating which goes first in each round:
#   INCR key:__rand_int__ and WINCRBY wkey:__rand_int__ 1 (default policy 1m:3h,1h:8d,1d:400d)
#   on 1M random keys, 50 clients, unpipelined and with -P 32.
# The table shows the median run's requests/s with p50/p99 (ms), and the ratio WINCRBY/INCR.
# Then, on a second fresh tallyd, it writes one WINCRBY to each of KEYS series and reports the
# memory (RSS growth) and, after a full compaction (TALLY COMPACT), the disk per windowed key.
# Benchmarks never fail on timing: the exit status is non-zero only when something fails.
#
# Usage: bench/compare-window.sh [--quick]    (--quick: a tenth of the requests, one round)
# Environment: TALLYD, ROUNDS (3), SCALE (1), TALLYD_ARGS ("--io-threads 1", as
# compare-redis.sh explains), KEYS (200000).
set -eu
TALLYD_ARGS=${TALLYD_ARGS-"--io-threads 1"}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-1}
KEYS=${KEYS:-200000}
CLIENTS=50
KEYSPACE=1000000
START_WAIT_TENTHS=100
RUN_TIMEOUT_S=180

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
parse_quick "$@"
require_tools "apt-get install redis-tools" redis-benchmark redis-cli
find_tallyd
make_tmp compare-window
start_tally() {
    start_tallyd tally everysec
    port=$tally_port
}

stop_tally() {
    stop_pids "$tally_pid"
    tally_pid=
}

# run_one WORKLOAD ROUND N ARGS...: appends "workload round rps p50 p99" to the results.
run_one() {
    workload=$1 round=$2 n=$3
    shift 3
    echo "  $workload, round $round: $n requests" >&2
    if ! timeout "$RUN_TIMEOUT_S" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" \
        -n "$n" -r "$KEYSPACE" --csv "$@" >"$tmp/run.csv" 2>"$tmp/run.err"; then
        echo "redis-benchmark failed:" >&2
        cat "$tmp/run.err" "$tmp/run.csv" >&2
        exit 1
    fi
    if grep -qiE 'error|warning' "$tmp/run.err" "$tmp/run.csv"; then
        echo "redis-benchmark reported errors:" >&2
        grep -iE 'error|warning' "$tmp/run.err" "$tmp/run.csv" | head -n 5 >&2
        exit 1
    fi
    grep -v '^"test"' "$tmp/run.csv" | head -n 1 | tr -d '"' |
        awk -F, -v w="$workload" -v r="$round" \
            'NF >= 7 { printf "%s %s %s %s %s\n", w, r, $2, $5, $7 }' >>"$tmp/results"
}

# run_pair PIPELINE N: INCR and WINCRBY, alternating which goes first.
run_pair() {
    p=$1 n=$2
    r=1
    while [ $r -le "$ROUNDS" ]; do
        if [ $((r % 2)) -eq 1 ]; then
            run_one "incr-P$p" "$r" "$n" -P "$p" INCR 'key:__rand_int__'
            run_one "wincrby-P$p" "$r" "$n" -P "$p" WINCRBY 'wkey:__rand_int__' 1
        else
            run_one "wincrby-P$p" "$r" "$n" -P "$p" WINCRBY 'wkey:__rand_int__' 1
            run_one "incr-P$p" "$r" "$n" -P "$p" INCR 'key:__rand_int__'
        fi
        r=$((r + 1))
    done
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$tally_pid/status"
}

: >"$tmp/results"
started=$(date +%s)
start_tally
echo "tallyd on port $port (${TALLYD_ARGS:-default options}), fsync everysec;" \
    "$ROUNDS round(s), $CLIENTS clients, -r $KEYSPACE" >&2
run_pair 1 "$(requests 300000)"
run_pair 32 "$(requests 1500000)"
stop_tally

# Space: one write to each of KEYS series.
start_tally
rss0=$(rss_kb)
awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) printf "WINCRBY series:%d 1\r\n", i }' |
    redis-cli -p "$port" --pipe >"$tmp/pipe.out" 2>&1 || {
    cat "$tmp/pipe.out" >&2
    exit 1
}
rss1=$(rss_kb)
mt_bytes=$(info_field "$port" storage memtable_bytes)
mt_entries=$(info_field "$port" storage memtable_entries)
redis-cli -p "$port" TALLY COMPACT >/dev/null
while redis-cli -p "$port" TALLY COMPACT STATUS | grep -qx running; do
    sleep 0.5
done
disk=$(du -sk "$tmp/tally" | awk '{ print $1 }')
stop_tally

echo
echo "WINCRBY vs INCR on one tallyd, $CLIENTS clients, -r $KEYSPACE, median of $ROUNDS round(s)," \
    "$(nproc) CPUs; latency in ms"
awk "$AWK_MEDIAN"'
{ i = ++cnt[$1]; rps[$1, i] = $3; p50[$1, $3] = $4; p99[$1, $3] = $5 }
END {
    printf "%-9s %12s %12s %8s %16s %16s\n", "pipeline", "INCR rps", "WINCRBY rps", "ratio",
        "INCR p50/p99", "WINCRBY p50/p99"
    split("1 32", ps, " ")
    for (k = 1; k <= 2; k++) {
        a = "incr-P" ps[k]; b = "wincrby-P" ps[k]
        ma = median(a); mb = median(b)
        printf "%-9s %12.0f %12.0f %7.2fx %16s %16s\n", "-P " ps[k], ma, mb,
            (ma > 0 ? mb / ma : 0), p50[a, ma] "/" p99[a, ma], p50[b, mb] "/" p99[b, mb]
    }
}' "$tmp/results"
echo "target (issue 4): WINCRBY >= 0.8x INCR"
awk -v k="$KEYS" -v r0="$rss0" -v r1="$rss1" -v d="$disk" -v mb="$mt_bytes" -v me="$mt_entries" 'BEGIN {
    printf "space for %d windowed keys written once (default policy: a head holding the newest bucket of each of 3 resolutions):\n", k
    printf "  memory: %.0f bytes per key (RSS %d -> %d KiB: the memtable'"'"'s slot array, touched whole, and fixed costs included)\n", (r1 - r0) * 1024 / k, r0, r1
    if (me > 0)
        printf "  memtable: %.1f bytes per key (INFO storage: memtable_bytes %d over %d entries; plus 8-byte slots at most 3/4 full)\n", mb / me, mb, me
    printf "  disk after a full compaction: %.1f bytes per key (%d KiB in the data directory)\n", d * 1024 / k, d
}'
echo "every run (workload round rps p50 p99):"
sed 's/^/  /' "$tmp/results"
echo "total time: $(($(date +%s) - started)) s"
