# Draws compare.png from report.py's data files: throughput, read p99 and
# write p99 per system and write ratio. Run: gnuplot -e "dir='OUT'" plot.gp
if (!exists("dir")) dir = "compare-out"
load dir."/plot/series.gp"

set terminal pngcairo size 1650,600 font "DejaVu Sans,11" noenhanced
set output dir."/compare.png"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics lw 0.5 lc rgb "#dddddd"
set xlabel "write ratio"
set tics nomirror
set border 3
# The three panels share one legend, drawn by a full-width empty plot
# below them (a panel's own key gets only a third of the width).
LEGEND_H = 0.16

# Log axes labelled at 1, 2 and 5 times each power of ten: a range of one
# decade would otherwise get a single label. Two lists: SI-prefixed counts
# ("20k") and plain numbers ("0.5").
tics_si = ""
tics_num = ""
do for [e=-3:8] {
    do for [m in "1 2 5"] {
        v = real(m) * 10.0**e
        sep = (tics_si eq "") ? "" : ", "
        tics_si = tics_si.sep.sprintf('"%s" %.10g', gprintf("%.0s%c", v), v)
        tics_num = tics_num.sep.sprintf('"%s" %.10g', gprintf("%g", v), v)
    }
}

# Sets the y range to whole decades around every value in FILE, at least
# a factor of two below the shortest bar so it stands clear of the axis.
range_of(file) = sprintf("set autoscale y; lo = 1e300; hi = 0; do for [c=2:nseries+1] { STATS_records = 0; stats '%s' using c nooutput; if (STATS_records > 0) { lo = (STATS_min < lo) ? STATS_min : lo; hi = (STATS_max > hi) ? STATS_max : hi } }; if (hi > 0) { set yrange [0.999 * 10**floor(log10(lo / 2)) : 1.001 * 10**ceil(log10(hi) + 1e-9)] } else { set yrange [1:10] }", file)

# One colour per series, the same in every panel.
array colors[8] = ["#4477aa", "#88ccee", "#cc6677", "#ee99aa", "#228833", "#ddaa33", "#aa3377", "#bbbbbb"]

set multiplot title "Three-node clusters on one machine, closed-loop clients" font ",13"
set size 1.0/3, 1 - LEGEND_H - 0.04
unset key

set origin 0, LEGEND_H
set title "throughput (ops/s, log)"
eval range_of(dir."/plot/throughput.dat")
eval "set ytics (".tics_si.")"
plot for [i=2:nseries+1] dir."/plot/throughput.dat" using i:xtic(1) title columnhead(i) lc rgb colors[i-1]

set origin 1.0/3, LEGEND_H
eval "set ytics (".tics_num.")"
set title "read p99 latency (ms, log)"
eval range_of(dir."/plot/read_p99.dat")
plot for [i=2:nseries+1] dir."/plot/read_p99.dat" using i:xtic(1) title columnhead(i) lc rgb colors[i-1]

set origin 2.0/3, LEGEND_H
set title "write p99 latency (ms, log)"
eval range_of(dir."/plot/write_p99.dat")
plot for [i=2:nseries+1] dir."/plot/write_p99.dat" using i:xtic(1) title columnhead(i) lc rgb colors[i-1]

set origin 0, 0
set size 1, LEGEND_H
unset title
unset xlabel
unset border
unset tics
unset grid
unset logscale y
set xrange [0:1]
set yrange [0:1]
set key center center horizontal maxrows 2 samplen 2 width 2
plot for [i=2:nseries+1] dir."/plot/throughput.dat" using (NaN):(NaN) with boxes title columnhead(i) lc rgb colors[i-1]

unset multiplot
