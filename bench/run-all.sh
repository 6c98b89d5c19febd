#!/bin/sh
# run-all.sh - every benchmark of Tally against its peer in one command. Writes every run into
# bench/results/*.tsv, the medians and tables into bench/results/summary.md, then draws
# docs/*.png with bench/plot.sh (when gnuplot is installed).
#
# Parts (--parts, comma-separated, default redis,engine,scale), each side by side in one
# invocation, alternating which goes first (odd rounds the peer, even rounds Tally):
#   redis   tallyd against redis-server over loopback, driven by bench/loadgen (50 connections,
#           one loadgen thread), each on 1M counters loaded first, unpipelined and with -P 32:
#             incr   INCR ctr:K
#             wincr  WINCRBY win:K 1 (default policy) against MULTI / INCR win:K / EXPIRE win:K
#                    3600 / EXEC on Redis, the usual way to keep a window there
#             get    GET ctr:K;   mget  MGET of 10 random keys
#           with appendonly yes + appendfsync everysec against --fsync everysec; then both
#           restarted with always / --fsync always for incr and wincr.
#   engine  bench/tally-bench (libtallystore against RocksDB's merge operator), ENGINE_ROUNDS
#           times.
#   scale   one tallyd and one redis-server (everysec) loaded with INCR of distinct keys,
#           pipelined, to each of SIZES counters in turn; at each size random INCR over the
#           loaded keys (-P 1 and -P 32), RSS, bytes on disk per counter, write amplification.
#           Redis is loaded only while the machine's available memory allows.
# Each figure is the median of ROUNDS runs. Benchmarks never fail on timing: the exit status is
# non-zero only when a server, loadgen or tally-bench fails or answers wrongly.
#
# Usage: bench/run-all.sh [--quick] [--parts LIST] [--report]
#   --quick   one round, short runs, 100k keys, sizes 100k 300k 1M: for trying the script
#   --report  only rewrite summary.md and the plots from the results already in RESULTS_DIR
# Environment: TALLYD (tallyd binary; default server/tallyd beside this folder), LOADGEN and
# TALLY_BENCH (default: bench/loadgen and bench/tally-bench of the build TALLYD is in),
# RESULTS_DIR (bench/results), ROUNDS (3), ENGINE_ROUNDS (ROUNDS), RUN_S (seconds per server
# run, 3), SIZES (scale: "1000000 10000000 50000000 100000000"), TALLYD_ARGS ("--io-threads 1",
# as compare-redis.sh explains), ENGINE_ARGS (tally-bench options; default none: 1M keys, 2M
# operations). The full run takes about 20 minutes on a 2-core machine, a third of it loading
# 100M counters into each server; the scale run needs about 10 GB of free memory and disk.
set -eu
TALLYD_ARGS=${TALLYD_ARGS-"--io-threads 1"}
ROUNDS=${ROUNDS:-3}
ENGINE_ROUNDS=${ENGINE_ROUNDS:-$ROUNDS}
RUN_S=${RUN_S:-3}
SIZES=${SIZES:-"1000000 10000000 50000000 100000000"}
ENGINE_ARGS=${ENGINE_ARGS:-}
KEYSPACE=1000000
CLIENTS=50
LOAD_CLIENTS=4
LOAD_PIPELINE=128
REDIS_BYTES_PER_KEY=100     # Redis needs about 70 per small counter; kept with a margin
MEMORY_RESERVE_KB=4194304   # left free for the other users of the machine and Redis's forks
SETTLE_MAX_S=60             # waiting for tallyd's compactions after a load
START_WAIT_TENTHS=100
RUN_TIMEOUT_S=3600

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

parts=redis,engine,scale
report_only=
while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        ROUNDS=1 ENGINE_ROUNDS=1 RUN_S=0.5 KEYSPACE=100000 SIZES="100000 300000 1000000"
        ENGINE_ARGS=${ENGINE_ARGS:---small}
        ;;
    --parts)
        [ $# -ge 2 ] || { echo "--parts needs a list" >&2 && exit 2; }
        parts=$2
        shift
        ;;
    --report) report_only=1 ;;
    *)
        echo "usage: $0 [--quick] [--parts redis,engine,scale] [--report]" >&2
        exit 2
        ;;
    esac
    shift
done
has_part() {
    case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

results=${RESULTS_DIR:-$here/results}
mkdir -p "$results"

# --- the report: medians, ratios and targets from the TSV files ----------------------------

report() {
    out=$results/summary.md
    {
        echo "# Benchmark results"
        echo
        if [ -f "$results/machine.txt" ]; then
            echo '```'
            cat "$results/machine.txt"
            echo '```'
            echo
        fi
    } >"$out"
    if [ -f "$results/server.tsv" ]; then
        awk "$AWK_MEDIAN"'
        NR == 1 { next }
        {
            row = $1 " " $2 " " $3; key = row " " $4
            if (!(row in seen)) { seen[row] = 1; order[++rows] = row }
            i = ++cnt[key]; rps[key, i] = $6; lat[key, $6] = $7 " / " $8 " / " $9
        }
        END {
            print "## tallyd against redis-server (median of " cnt[order[1] " tally"] " runs)"
            print ""
            print "Requests/s of each server, the ratio tallyd/redis, and p50 / p99 / p999 latency"
            print "in microseconds of the median run. `wincr` is WINCRBY on tallyd and MULTI, INCR,"
            print "EXPIRE, EXEC on Redis; `mget` is MGET of 10 keys (one request)."
            print ""
            print "| workload | fsync | pipeline | redis req/s | tallyd req/s | tallyd/redis |" \
                " redis p50/p99/p999 us | tallyd p50/p99/p999 us |"
            print "|---|---|---:|---:|---:|---:|---:|---:|"
            print "workload\tfsync\tpipeline\tredis\ttally\tratio" > MED
            for (r = 1; r <= rows; r++) {
                split(order[r], f, " ")
                kr = order[r] " redis"; kt = order[r] " tally"
                mr = median(kr); mt = median(kt); ratio = (mr > 0 ? mt / mr : 0)
                printf "| %s | %s | %s | %.0f | %.0f | %.2fx | %s | %s |\n", f[1], f[2], f[3],
                    mr, mt, ratio, lat[kr, mr], lat[kt, mt]
                printf "%s\t%s\t%s\t%.0f\t%.0f\t%.3f\n", f[1], f[2], f[3], mr, mt, ratio > MED
                if (f[1] == "incr" || f[1] == "wincr") {
                    tgt = tgt sprintf("- %s, %s, -P %s: %.2fx (target 1.3x): %s\n", f[1], f[2],
                        f[3], ratio, ratio >= 1.3 ? "met" : "MISSED")
                }
            }
            print ""
            print "Target: every INCR-family ratio (incr, wincr) at least 1.3x Redis."
            print ""
            printf "%s", tgt
            print ""
        }' MED="$results/server-median.tsv" "$results/server.tsv" >>"$out"
    fi
    if [ -f "$results/engine.tsv" ]; then
        awk "$AWK_MEDIAN"'
        FNR == 1 { next }
        FILENAME ~ /engine.tsv$/ {
            key = $2 " " $3
            if (!($2 in seen)) { seen[$2] = 1; order[++rows] = $2 }
            i = ++cnt[key]; rps[key, i] = $4; lat[key, $4] = $5 " / " $6 " / " $7
            eng[$3] = 1; runs = cnt[key]
            next
        }
        {
            for (c = 4; c <= 8; c++) {
                key = "disk " $2 " " c
                i = ++cnt[key]; rps[key, i] = $c
            }
            disk[$2] = 1
        }
        END {
            print "## libtallystore against RocksDB (bench/tally-bench, median of " runs " runs)"
            print ""
            print "Operations/s, the ratio tally/peer (RocksDB merge operator; rocksdb-rmw is Get +"
            print "Put), and p50 / p99 / p999 latency in microseconds of the median run."
            print ""
            print "| workload | engine | ops/s | tally/engine | p50/p99/p999 us |"
            print "|---|---|---:|---:|---:|"
            split("tally rocksdb rocksdb-rmw", en, " ")
            for (r = 1; r <= rows; r++) {
                mt = median(order[r] " tally")
                for (e = 1; e <= 3; e++) {
                    key = order[r] " " en[e]
                    if (!(key in cnt)) continue
                    m = median(key)
                    printf "| %s | %s | %.0f | %s | %s |\n", order[r], en[e], m,
                        en[e] == "tally" ? "" : sprintf("%.2fx", m > 0 ? mt / m : 0), lat[key, m]
                }
            }
            print ""
            print "After a flush and a full compaction:"
            print ""
            print "| engine | bytes on disk per counter | write amplification: increments |" \
                " + full compaction | SSTable MB written: increments | + full compaction |"
            print "|---|---:|---:|---:|---:|---:|"
            for (e = 1; e <= 3; e++) {
                if (!(en[e] in disk)) continue
                printf "| %s | %s | %s | %s | %s | %s |\n", en[e], median("disk " en[e] " 4"),
                    median("disk " en[e] " 5"), median("disk " en[e] " 6"),
                    median("disk " en[e] " 7"), median("disk " en[e] " 8")
            }
            print ""
        }' "$results/engine.tsv" "$results/engine-disk.tsv" >>"$out"
    fi
    if [ -f "$results/scale.tsv" ] && [ -f "$results/scale-mem.tsv" ]; then
        awk "$AWK_MEDIAN"'
        FNR == 1 { next }
        FILENAME ~ /scale.tsv$/ {
            key = $1 " " $2 " " $3
            if (!($2 in seen)) { seen[$2] = 1; sizes[++nsizes] = $2 }
            i = ++cnt[key]; rps[key, i] = $5; lat[key, $5] = $6 " / " $7 " / " $8
            pipes[$3] = 1; runs = cnt[key]
            next
        }
        {
            rss[$1, $2] = $3; disk[$1, $2] = $5; wamp[$1, $2] = $6; load[$1, $2] = $7
            sst[$1, $2] = $8; peak[$1, $2] = (NF >= 9 ? $9 : "")
        }
        function mib(b) { return b == "" ? "-" : sprintf("%.0f", b / 1048576) }
        function num(v) { return v == "" ? "-" : sprintf("%.0f", v) }
        function per(b, n) { return b == "" ? "-" : sprintf("%.1f", b / n) }
        function ratio(a, b) {
            return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2fx", a / b)
        }
        END {
            print "## Scale: counters loaded into tallyd and redis-server (median of " runs " runs)"
            print ""
            print "Random INCR over the loaded keys, 50 connections (requests/s of the median run,"
            print "p50 / p99 / p999 in microseconds); RSS after the runs at that size, once the"
            print "flushes and compactions of tallyd are done, and peak RSS (the most the process"
            print "held at any moment so far, loading included); disk: the data directory per"
            print "counter (Redis: the AOF; tallyd: WAL and SSTables, and in brackets the SSTables"
            print "alone); load: INCR/s of distinct keys, pipelined."
            print ""
            print "| counters | pipeline | redis req/s | tallyd req/s | tallyd/redis |" \
                " redis p50/p99/p999 us | tallyd p50/p99/p999 us |"
            print "|---:|---:|---:|---:|---:|---:|---:|"
            print "keys\tpipeline\tredis\ttally\ttally_rss_mib\tredis_rss_mib" > MED
            for (s = 1; s <= nsizes; s++) {
                n = sizes[s]
                for (p = 1; p <= 32; p++) {
                    if (!(p in pipes)) continue
                    kr = "redis " n " " p; kt = "tally " n " " p
                    mr = (kr in cnt) ? median(kr) : ""; mt = median(kt)
                    printf "| %s | %s | %s | %s | %s | %s | %s |\n", n, p, num(mr), num(mt),
                        ratio(mt, mr), (mr == "" ? "-" : lat[kr, mr]), lat[kt, mt]
                    rr = rss["redis", n]
                    printf "%s\t%s\t%s\t%s\t%s\t%s\n", n, p, (mr == "" ? "NaN" : mr), mt,
                        mib(rss["tally", n]), (rr == "" ? "NaN" : mib(rr)) > MED
                    thr[n, p] = mt
                }
            }
            print ""
            print "| counters | redis RSS MiB | tallyd RSS MiB | tallyd/redis RSS |" \
                " redis / tallyd peak RSS MiB |" \
                " redis disk bytes/counter | tallyd disk bytes/counter (SSTables) |" \
                " tallyd write amplification | redis load/s | tallyd load/s |"
            print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (s = 1; s <= nsizes; s++) {
                n = sizes[s]
                printf "| %s | %s | %s | %s | %s / %s | %s | %s (%s) | %s | %s | %s |\n", n,
                    mib(rss["redis", n]), mib(rss["tally", n]),
                    ratio(rss["tally", n], rss["redis", n]), mib(peak["redis", n]),
                    mib(peak["tally", n]), per(disk["redis", n], n),
                    per(disk["tally", n], n), per(sst["tally", n], n), wamp["tally", n],
                    num(load["redis", n]), num(load["tally", n])
            }
            print ""
            print "Targets:"
            print ""
            n = 10000000
            if (rss["tally", n] != "" && rss["redis", n] != "") {
                v = rss["tally", n] / rss["redis", n]
                printf "- RSS at 10M counters: %.2fx Redis (target at most 0.3x): %s", v,
                    (v <= 0.3 ? "met" : "MISSED")
                if (peak["tally", n] != "" && peak["redis", n] != "")
                    printf "; peak RSS %.2fx the peak of Redis", peak["tally", n] / peak["redis", n]
                printf "\n"
            }
            first = sizes[1]; last = sizes[nsizes]
            for (p = 1; p <= 32; p++) {
                if (!(p in pipes) || thr[first, p] == 0) continue
                v = thr[last, p] / thr[first, p]
                printf "- INCR/s at %s counters against %s, -P %d: %.2fx" \
                    " (target at least 0.7x): %s\n",
                    last, first, p, v, (v >= 0.7 ? "met" : "MISSED")
            }
            print ""
        }' MED="$results/scale-median.tsv" "$results/scale.tsv" "$results/scale-mem.tsv" >>"$out"
    fi
    echo "wrote $out" >&2
    if command -v gnuplot >/dev/null 2>&1; then
        # The plots of docs/ come from bench/results; other results keep theirs beside them.
        if [ "$(cd "$results" && pwd)" = "$(cd "$here/results" 2>/dev/null && pwd)" ]; then
            RESULTS_DIR=$results "$here/plot.sh"
        else
            RESULTS_DIR=$results DOCS_DIR=$results "$here/plot.sh"
        fi
    else
        echo "gnuplot is not installed (apt-get install gnuplot-nox): no plots" >&2
    fi
}

if [ -n "$report_only" ]; then
    report
    exit 0
fi

# --- set-up --------------------------------------------------------------------------------

require_tools "apt-get install redis-server redis-tools" redis-server redis-cli
find_tallyd
build=$(cd "$(dirname "$tallyd")/.." && pwd)
loadgen=${LOADGEN:-$build/bench/loadgen}
tally_bench=${TALLY_BENCH:-$build/bench/tally-bench}
for bin in "$loadgen" "$tally_bench"; do
    if [ ! -x "$bin" ]; then
        echo "$bin not found: make bench/loadgen bench/tally-bench in the build, or set" \
            "LOADGEN / TALLY_BENCH" >&2
        exit 1
    fi
done

make_tmp run-all

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    dev=$(df -P "$tmp" | awk 'NR == 2 { print $1 }')
    echo "disk: $(df -hP "$tmp" | awk 'NR == 2 { print $1 ", " $2 " (" $4 " free)" }')," \
        "$(findmnt -no FSTYPE -T "$tmp" 2>/dev/null || echo '?'), rotational:" \
        "$(cat "/sys/block/${dev##*/}/queue/rotational" 2>/dev/null || echo '?')"
    echo "redis-server: $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "rocksdb: $(dpkg-query -W -f='${Version}' librocksdb-dev 2>/dev/null || echo '?')"
    rev=$(cd "$here/.." && git rev-parse --short HEAD 2>/dev/null || echo '?')
    (cd "$here/.." && git diff --quiet HEAD 2>/dev/null) || rev="$rev with uncommitted changes"
    echo "tallyd: $rev (${TALLYD_ARGS:-default options}); cc: $(${CC:-cc} --version | head -n 1)"
    echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "parts: $parts; rounds: $ROUNDS (engine: $ENGINE_ROUNDS); seconds per server run: $RUN_S"
} >"$tmp/machine.txt"
cat "$tmp/machine.txt" >&2
started=$(date +%s)

# lg PORT LOADGEN-ARGS...: one loadgen run; its figures line goes to $tmp/lg.out.
lg() {
    lg_port=$1
    shift
    if ! timeout "$RUN_TIMEOUT_S" "$loadgen" -p "$lg_port" "$@" >"$tmp/lg.raw" 2>"$tmp/lg.err"
    then
        echo "loadgen failed (port $lg_port: $*):" >&2
        cat "$tmp/lg.err" "$tmp/lg.raw" >&2
        exit 1
    fi
    grep -v '^#' "$tmp/lg.raw" >"$tmp/lg.out"
}

# load PORT FIRST N: INCR of the distinct keys ctr:FIRST .. ctr:FIRST+N-1, pipelined.
load() {
    lg "$1" -c "$LOAD_CLIENTS" -P "$LOAD_PIPELINE" --sequential --first "$2" -n "$3" \
        INCR 'ctr:__key__'
}

# sst_bytes PORT: the bytes of tallyd's SSTables, from INFO storage (levelN:files=..,bytes=..).
sst_bytes() {
    redis-cli -p "$1" INFO storage | tr -d '\r' |
        awk -F'[:,=]' '/^level[0-9]+:/ { for (i = 2; i < NF; i++) if ($i == "bytes") s += $(i + 1) }
            END { print s + 0 }'
}

# status_bytes PID FIELD: a /proc/PID/status figure in bytes: VmRSS (resident now) or VmHWM
# (the most the process has held at any moment since it started).
status_bytes() {
    awk -v f="$2:" '$1 == f { printf "%.0f\n", $2 * 1024 }' "/proc/$1/status"
}

# --- part redis ----------------------------------------------------------------------------

# server_run WORKLOAD FSYNC PIPELINE SERVER PORT ROUND: one run, appended to server.tsv.
server_run() {
    sr_w=$1 sr_f=$2 sr_p=$3 sr_s=$4 sr_port=$5 sr_r=$6
    set --
    case $sr_w/$sr_s in
    incr/*) set -- INCR 'ctr:__key__' ;;
    wincr/tally) set -- WINCRBY 'win:__key__' 1 ;;
    wincr/redis) set -- MULTI \; INCR 'win:__key__' \; EXPIRE 'win:__key__' 3600 \; EXEC ;;
    get/*) set -- GET 'ctr:__key__' ;;
    mget/*)
        set -- MGET
        for i in 1 2 3 4 5 6 7 8 9 10; do set -- "$@" 'ctr:__rand__'; done
        ;;
    esac
    echo "  $sr_w ($sr_f, -P $sr_p) against $sr_s, round $sr_r" >&2
    lg "$sr_port" -c "$CLIENTS" -P "$sr_p" -d "$RUN_S" -r "$KEYSPACE" "$@"
    awk -v pre="$sr_w	$sr_f	$sr_p	$sr_s	$sr_r" \
        '{ printf "%s\t%s\t%s\t%s\t%s\n", pre, $3, $4, $5, $6 }' "$tmp/lg.out" >>"$tmp/server.tsv"
}

# server_workload WORKLOAD FSYNC PIPELINE: every round on both servers, alternating.
server_workload() {
    r=1
    while [ $r -le "$ROUNDS" ]; do
        if [ $((r % 2)) -eq 1 ]; then
            server_run "$1" "$2" "$3" redis "$redis_port" $r
            server_run "$1" "$2" "$3" tally "$tally_port" $r
        else
            server_run "$1" "$2" "$3" tally "$tally_port" $r
            server_run "$1" "$2" "$3" redis "$redis_port" $r
        fi
        r=$((r + 1))
    done
}

part_redis() {
    printf 'workload\tfsync\tpipeline\tserver\tround\trps\tp50_us\tp99_us\tp999_us\n' \
        >"$tmp/server.tsv"
    for mode in everysec always; do
        start_redis redis "$mode"
        start_tallyd tally "$mode"
        echo "redis-server on port $redis_port, tallyd on port $tally_port, $mode;" \
            "loading $KEYSPACE counters into each" >&2
        load "$redis_port" 0 "$KEYSPACE"
        load "$tally_port" 0 "$KEYSPACE"
        workloads="incr wincr get mget"
        [ "$mode" = always ] && workloads="incr wincr"
        for w in $workloads; do
            for p in 1 32; do
                server_workload "$w" "$mode" $p
            done
        done
        stop_pids "$redis_pid" "$tally_pid"
        redis_pid=
        tally_pid=
    done
    cp "$tmp/server.tsv" "$results/server.tsv"
}

# --- part engine ---------------------------------------------------------------------------

part_engine() {
    printf 'round\tworkload\tengine\tops\tp50_us\tp99_us\tp999_us\n' >"$tmp/engine.tsv"
    printf 'round\tengine\tdisk_bytes\tbytes_per_counter\t%s\n' \
        'wamp_incr\twamp_full\tmb_incr\tmb_full' >"$tmp/engine-disk.tsv"
    r=1
    while [ $r -le "$ENGINE_ROUNDS" ]; do
        echo "  tally-bench ${ENGINE_ARGS:-(defaults)}, round $r" >&2
        # shellcheck disable=SC2086 # ENGINE_ARGS is a list of options
        if ! "$tally_bench" $ENGINE_ARGS >"$tmp/engine.out" 2>"$tmp/engine.err"; then
            echo "tally-bench failed:" >&2
            tail -n 20 "$tmp/engine.err" "$tmp/engine.out" >&2
            exit 1
        fi
        # The two tables of its output: "workload engine ops/s p50 p99 p999" and, after "after a
        # flush", "engine disk-bytes bytes/counter wamp-incr wamp-full ...".
        awk -v r=$r '
            /^workload / { t = 1; next }
            /^engine / { t = 2; next }
            /^$/ { t = 0; next }
            t == 1 && NF >= 6 { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, $1, $2, $3, $4, $5, $6 }
        ' "$tmp/engine.out" >>"$tmp/engine.tsv"
        awk -v r=$r '
            /^engine / { t = 1; next }
            /^[a-z]/ && !/^(tally|rocksdb)/ { t = 0 }
            t == 1 && NF >= 7 {
                printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, $1, $2, $3, $4, $5, $6, $7
            }
        ' "$tmp/engine.out" >>"$tmp/engine-disk.tsv"
        sed "s/^/round $r: /" "$tmp/engine.out" >>"$tmp/engine.log"
        r=$((r + 1))
    done
    cp "$tmp/engine.tsv" "$tmp/engine-disk.tsv" "$results/"
    cp "$tmp/engine.log" "$results/engine-output.txt"
}

# --- part scale ----------------------------------------------------------------------------

# settle_tally: waits (at most SETTLE_MAX_S) until tallyd's compaction count stops changing.
settle_tally() {
    last=-1
    i=0
    while [ $i -lt "$SETTLE_MAX_S" ]; do
        now=$(info_field "$tally_port" storage compactions)
        [ "$now" = "$last" ] && return 0
        last=$now
        sleep 2
        i=$((i + 2))
    done
}

# scale_run SERVER PORT KEYS PIPELINE ROUND: random INCR over the loaded keys.
scale_run() {
    echo "  INCR over $3 keys (-P $4) against $1, round $5" >&2
    lg "$2" -c "$CLIENTS" -P "$4" -d "$RUN_S" -r "$3" INCR 'ctr:__key__'
    awk -v pre="$1	$3	$4	$5" '{ printf "%s\t%s\t%s\t%s\t%s\n", pre, $3, $4, $5, $6 }' \
        "$tmp/lg.out" >>"$tmp/scale.tsv"
}

part_scale() {
    printf 'server\tkeys\tpipeline\tround\trps\tp50_us\tp99_us\tp999_us\n' >"$tmp/scale.tsv"
    printf 'server\tkeys\trss_bytes\tused_memory\tdisk_bytes\twamp\tload_rps\tsst_bytes\tpeak_rss_bytes\n' \
        >"$tmp/scale-mem.tsv"
    start_redis redis-scale everysec
    start_tallyd tally-scale everysec
    loaded=0
    redis_loaded=0
    for size in $SIZES; do
        n=$((size - loaded))
        echo "scale: loading tallyd to $size counters" >&2
        load "$tally_port" "$loaded" "$n"
        tally_load=$(awk '{ print $3 }' "$tmp/lg.out")
        redis_load=
        avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
        need_kb=$((n * REDIS_BYTES_PER_KEY / 1024 + MEMORY_RESERVE_KB))
        if [ -n "$redis_pid" ] && [ "$redis_loaded" -eq "$loaded" ] &&
            [ "$avail_kb" -gt "$need_kb" ]; then
            echo "scale: loading redis-server to $size counters" >&2
            load "$redis_port" "$loaded" "$n"
            redis_load=$(awk '{ print $3 }' "$tmp/lg.out")
            redis_loaded=$size
        elif [ -n "$redis_pid" ]; then
            echo "scale: not enough memory for Redis at $size counters" \
                "($avail_kb KiB available)" >&2
            stop_pids "$redis_pid"
            redis_pid=
        fi
        loaded=$size
        settle_tally
        for p in 1 32; do
            r=1
            while [ $r -le "$ROUNDS" ]; do
                if [ $((r % 2)) -eq 1 ] && [ -n "$redis_pid" ]; then
                    scale_run redis "$redis_port" "$size" $p $r
                fi
                scale_run tally "$tally_port" "$size" $p $r
                if [ $((r % 2)) -eq 0 ] && [ -n "$redis_pid" ]; then
                    scale_run redis "$redis_port" "$size" $p $r
                fi
                r=$((r + 1))
            done
        done
        # RSS once the runs' flushes and compactions are done: a snapshot taken while a flush
        # holds a second memtable and its sort varied by 100 MiB between identical builds.
        # The peak (VmHWM, since the server started) is reported beside it.
        settle_tally
        printf 'tally\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$(status_bytes "$tally_pid" VmRSS)" \
            "$(info_field "$tally_port" memory used_memory)" \
            "$(du -sb "$tmp/tally-scale" | cut -f1)" \
            "$(info_field "$tally_port" storage write_amplification)" "$tally_load" \
            "$(sst_bytes "$tally_port")" "$(status_bytes "$tally_pid" VmHWM)" >>"$tmp/scale-mem.tsv"
        if [ -n "$redis_pid" ]; then
            printf 'redis\t%s\t%s\t%s\t%s\t-\t%s\t-\t%s\n' "$size" "$(status_bytes "$redis_pid" VmRSS)" \
                "$(info_field "$redis_port" memory used_memory)" \
                "$(du -sb "$tmp/redis-scale" | cut -f1)" "$redis_load" \
                "$(status_bytes "$redis_pid" VmHWM)" >>"$tmp/scale-mem.tsv"
        fi
        tail -n 2 "$tmp/scale-mem.tsv" >&2
    done
    stop_pids "$redis_pid" "$tally_pid"
    redis_pid=
    tally_pid=
    cp "$tmp/scale.tsv" "$tmp/scale-mem.tsv" "$results/"
}

has_part redis && part_redis
has_part engine && part_engine
has_part scale && part_scale
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg);" \
    "total time: $(($(date +%s) - started)) s" >>"$tmp/machine.txt"
cp "$tmp/machine.txt" "$results/machine.txt"
report
cat "$results/summary.md"
