#!/bin/sh
# plot.sh - draws the benchmark plots of docs/BENCHMARKS.md with gnuplot from the medians that
# bench/run-all.sh wrote into bench/results/:
#   docs/bench-server.png  requests/s of tallyd and redis-server by workload (server-median.tsv)
#   docs/bench-scale.png   INCR/s and RSS of both by number of counters (scale-median.tsv)
# A plot whose results file is missing is skipped. Exits non-zero only when gnuplot fails.
#
# Usage: bench/plot.sh
# Environment: RESULTS_DIR (default bench/results), DOCS_DIR (default docs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
results=${RESULTS_DIR:-$here/results}
docs=${DOCS_DIR:-$here/../docs}
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "gnuplot is not installed (apt-get install gnuplot-nox)" >&2
    exit 1
fi
mkdir -p "$docs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-plot-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ -f "$results/server-median.tsv" ]; then
    # One cluster per workload row, labelled "incr -P1 everysec", in thousands of requests/s.
    awk -F'\t' 'NR > 1 {
        printf "\"%s -P%s\\n%s\"\t%.1f\t%.1f\n", $1, $3, $2, $4 / 1000, $5 / 1000
    }' "$results/server-median.tsv" >"$tmp/server.dat"
    gnuplot <<EOF
set terminal pngcairo size 1100,520 font "sans,10"
set output "$docs/bench-server.png"
set bmargin 5
set title "tallyd and redis-server: requests/s by workload (median runs, 50 connections)"
set ylabel "thousands of requests/s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set datafile separator "\t"
plot "$tmp/server.dat" using 2:xtic(1) title "redis-server" linecolor rgb "#c0392b", \
     "" using 3 title "tallyd" linecolor rgb "#2471a3"
EOF
    echo "wrote $docs/bench-server.png" >&2
fi

if [ -f "$results/scale-median.tsv" ]; then
    # Columns: keys pipeline redis tally tally_rss_mib redis_rss_mib (NaN where Redis was not run).
    awk -F'\t' 'NR > 1 && $2 == 32' "$results/scale-median.tsv" >"$tmp/p32.dat"
    awk -F'\t' 'NR > 1 && $2 == 1' "$results/scale-median.tsv" >"$tmp/p1.dat"
    gnuplot <<EOF
set terminal pngcairo size 1100,450 font "sans,10"
set output "$docs/bench-scale.png"
set datafile separator "\t"
set datafile missing "NaN"
set multiplot layout 1,2 title "Random INCR over N loaded counters (median runs, 50 connections)"
set logscale x 10
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0
set format x "%.0s%c"
set xlabel "counters"
set grid
set key top right
set yrange [0:*]
set ylabel "thousands of INCR/s"
set title "throughput"
plot "$tmp/p32.dat" using 1:(\$4/1000) with linespoints lw 2 lc rgb "#2471a3" title "tallyd -P 32",\
     "$tmp/p32.dat" using 1:(\$3/1000) with linespoints lw 2 lc rgb "#c0392b" title "redis -P 32", \
     "$tmp/p1.dat" using 1:(\$4/1000) with linespoints dt 2 lc rgb "#2471a3" title "tallyd -P 1", \
     "$tmp/p1.dat" using 1:(\$3/1000) with linespoints dt 2 lc rgb "#c0392b" title "redis -P 1"
set title "resident memory (RSS)"
set ylabel "MiB (log scale)"
set logscale y 10
set yrange [*:*]
set key top left
plot "$tmp/p32.dat" using 1:5 with linespoints lw 2 lc rgb "#2471a3" title "tallyd", \
     "$tmp/p32.dat" using 1:6 with linespoints lw 2 lc rgb "#c0392b" title "redis-server"
unset multiplot
EOF
    echo "wrote $docs/bench-scale.png" >&2
fi
