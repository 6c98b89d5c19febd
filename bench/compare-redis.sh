#!/bin/sh
# compare-redis.sh - tallyd against Debian's redis-server, side by side, with redis-benchmark.
#
# Starts redis-server (appendonly yes, appendfsync everysec) and tallyd (--fsync everysec),
# each on its own free loopback port with a fresh temporary directory, and runs the same
# redis-benchmark workloads against both, alternating which goes first:
#   INCR on 1M random keys (counter:__rand_int__, -r 1000000), 50 clients, unpipelined
#   INCR the same with -P 32
#   SET and GET on 1M random keys, 50 clients, unpipelined
# then restarts both with appendfsync always / --fsync always and runs the two INCR workloads
# again. Each workload runs ROUNDS times on each server; the table shows the median run's
# requests/s with its p50 and p99 latency (redis-benchmark --csv, milliseconds), and the ratio
# tallyd/redis. Benchmarks never fail on timing: the exit status is non-zero only when a server
# or redis-benchmark fails.
#
# Usage: bench/compare-redis.sh [--quick]     (--quick: a tenth of the requests, one round)
# Environment: TALLYD (the binary; else server/tallyd beside this script's folder), ROUNDS
# (default 3), SCALE (multiplies every request count; default 1), TALLYD_ARGS (extra tallyd
# options; default "--io-threads 1", see below), BENCH_ARGS (extra redis-benchmark options,
# such as "--threads 2").
# Why one worker by default: redis-benchmark is single-threaded and needs a whole core; on a
# 2-core machine tallyd's default of a worker per CPU makes three busy threads share two cores,
# while Redis serves from one thread. Set TALLYD_ARGS= (empty) to run tallyd's own default.
# With the defaults the whole run takes two to four minutes on a 2-core machine.
set -eu
TALLYD_ARGS=${TALLYD_ARGS-"--io-threads 1"}

ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-1}
CLIENTS=50
KEYSPACE=1000000
START_WAIT_TENTHS=100 # 10 s
RUN_TIMEOUT_S=120

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
parse_quick "$@"
require_tools "apt-get install redis-server redis-tools" redis-server redis-benchmark redis-cli
find_tallyd

make_tmp compare-redis

# start_servers MODE: MODE is everysec or always; fresh directories each time.
start_servers() {
    start_redis redis "$1"
    start_tallyd tally "$1"
    echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on port" \
        "$redis_port, tallyd on port $tally_port (${TALLYD_ARGS:-default options}), both with $1 durability" >&2
}

stop_servers() {
    stop_pids "$redis_pid" "$tally_pid"
    redis_pid=
    tally_pid=
}

# run_one WORKLOAD MODE SERVER PORT ROUND N ARGS...: one redis-benchmark run; appends
# "workload mode server round rps p50 p99" to the results.
run_one() {
    workload=$1 mode=$2 server=$3 port=$4 round=$5 n=$6
    shift 6
    echo "  $workload ($mode) against $server, round $round: $n requests" >&2
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
    if ! timeout "$RUN_TIMEOUT_S" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" \
        -n "$n" -r "$KEYSPACE" --csv ${BENCH_ARGS:-} "$@" >"$tmp/run.csv" 2>"$tmp/run.err"; then
        echo "redis-benchmark failed against $server:" >&2
        cat "$tmp/run.err" "$tmp/run.csv" >&2
        exit 1
    fi
    if grep -qiE 'error|warning' "$tmp/run.err" "$tmp/run.csv"; then
        echo "redis-benchmark reported errors against $server:" >&2
        grep -iE 'error|warning' "$tmp/run.err" "$tmp/run.csv" | head -n 5 >&2
        exit 1
    fi
    # "INCR","127388.53","0.215","0.064","0.207","0.303","0.399","1.215"
    line=$(grep -v '^"test"' "$tmp/run.csv" | head -n 1 | tr -d '"')
    echo "$line" | awk -F, -v w="$workload" -v m="$mode" -v s="$server" -v r="$round" \
        'NF >= 7 { printf "%s %s %s %s %s %s %s\n", w, m, s, r, $2, $5, $7 }' >>"$tmp/results"
}

# run_workload NAME MODE N ARGS...: every round, alternating which server goes first.
run_workload() {
    name=$1 mode=$2 n=$3
    shift 3
    r=1
    while [ $r -le "$ROUNDS" ]; do
        if [ $((r % 2)) -eq 1 ]; then
            run_one "$name" "$mode" redis "$redis_port" "$r" "$n" "$@"
            run_one "$name" "$mode" tally "$tally_port" "$r" "$n" "$@"
        else
            run_one "$name" "$mode" tally "$tally_port" "$r" "$n" "$@"
            run_one "$name" "$mode" redis "$redis_port" "$r" "$n" "$@"
        fi
        r=$((r + 1))
    done
}

: >"$tmp/results"
started=$(date +%s)
echo "$ROUNDS round(s), $CLIENTS clients, keys from a space of $KEYSPACE" >&2

start_servers everysec
run_workload incr everysec "$(requests 400000)" -t incr -P 1
run_workload incr-P32 everysec "$(requests 3000000)" -t incr -P 32
run_workload set everysec "$(requests 250000)" -t set -P 1
run_workload get everysec "$(requests 250000)" -t get -P 1
stop_servers

start_servers always
run_workload incr always "$(requests 200000)" -t incr -P 1
run_workload incr-P32 always "$(requests 1500000)" -t incr -P 32
stop_servers

# The table: for each workload and durability, the median run of each server.
echo
echo "tallyd vs redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $CLIENTS" \
    "clients, -r $KEYSPACE, median of $ROUNDS round(s), $(nproc) CPUs; latency in ms"
awk "$AWK_MEDIAN"'
{
    key = $1 " " $2 " " $3
    if (!(($1 " " $2) in seen)) { seen[$1 " " $2] = 1; order[++rows] = $1 " " $2 }
    i = ++cnt[key]; rps[key, i] = $5; p50[key, $5] = $6; p99[key, $5] = $7
}
END {
    printf "%-10s %-9s %12s %12s %8s %16s %16s\n", "workload", "fsync", "redis rps", "tally rps",
        "ratio", "redis p50/p99", "tally p50/p99"
    for (r = 1; r <= rows; r++) {
        split(order[r], f, " ")
        kr = order[r] " redis"; kt = order[r] " tally"
        mr = median(kr); mt = median(kt)
        printf "%-10s %-9s %12.0f %12.0f %7.2fx %16s %16s\n", f[1], f[2], mr, mt,
            (mr > 0 ? mt / mr : 0), p50[kr, mr] "/" p99[kr, mr], p50[kt, mt] "/" p99[kt, mt]
    }
}' "$tmp/results"
echo "targets (issue 3): tally/redis >= 1.3x on every INCR row with everysec, >= 2x with always"
echo "every run (workload fsync server round rps p50 p99):"
sed 's/^/  /' "$tmp/results"
echo "total time: $(($(date +%s) - started)) s"
