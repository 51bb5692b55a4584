# One PNG per scenario of the attack lab (bench/attack.sh passes the
# variables): ghd/ngd = per-second data of gatehouse / the nginx setup
# (t legit_ok_pct legit_p99_ms attack_sent attack_refused level), ghc/ngc
# = server CPU samples (t cpu_pct rss_mb), out, ttl, as/ae = attack window,
# dur = duration of the run.
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1000,1100 font "sans,9"
} else {
    set terminal png size 1000,1100
}
set output out
set multiplot layout 4,1 title ttl font ",11"
set grid
set key outside right top
set xlabel "seconds since the start of the run (intended send time)"
set xrange [0:dur]
set lmargin 10
set rmargin 34
set object 1 rectangle from as, graph 0 to ae, graph 1 fillcolor rgb "#fbe3e3" fillstyle solid 0.5 noborder behind

set title "legitimate users: requests answered OK, % of those due in each second"
set ylabel "%"
set yrange [0:105]
plot ghd using ($1+0.5):2 with linespoints lw 2 pt 7 ps 0.4 lc rgb "#1f77b4" title "gatehouse, shield on", \
     ngd using ($1+0.5):2 with linespoints lw 2 pt 5 ps 0.4 lc rgb "#d62728" title "nginx limits + gatehouse"

set title "legitimate users: p99 latency from intended send time (log scale)"
set ylabel "ms"
set yrange [*:*]
set logscale y
plot ghd using ($1+0.5):3 with linespoints lw 2 pt 7 ps 0.4 lc rgb "#1f77b4" title "gatehouse, shield on", \
     ngd using ($1+0.5):3 with linespoints lw 2 pt 5 ps 0.4 lc rgb "#d62728" title "nginx limits + gatehouse"
unset logscale y

set title "attack traffic: requests due per second, and refused (429/403/503/408 or closed)"
set ylabel "requests/s"
set yrange [0:*]
set y2label "attack level"
set y2range [-0.2:2.2]
set y2tics ("normal" 0, "elevated" 1, "under attack" 2)
plot ghd using ($1+0.5):4 with lines lw 2 lc rgb "#7f7f7f" title "attack sent", \
     ghd using ($1+0.5):5 with lines lw 2 lc rgb "#1f77b4" title "refused: gatehouse", \
     ngd using ($1+0.5):5 with lines lw 2 dt 2 lc rgb "#d62728" title "refused: nginx setup", \
     ghd using 1:6 axes x1y2 with steps lw 2 lc rgb "#2ca02c" title "level: gatehouse"
unset y2tics
unset y2label

set title "server processes: CPU % (one core = 100) and resident memory"
set ylabel "CPU %"
set yrange [0:*]
set y2label "MB"
set y2tics
set y2range [0:*]
plot ghc using 1:2 with lines lw 2 lc rgb "#1f77b4" title "CPU: gatehouse", \
     ngc using 1:2 with lines lw 2 lc rgb "#d62728" title "CPU: nginx + gatehouse", \
     ghc using 1:3 axes x1y2 with lines lw 1 dt 3 lc rgb "#1f77b4" title "RSS: gatehouse", \
     ngc using 1:3 axes x1y2 with lines lw 1 dt 3 lc rgb "#d62728" title "RSS: nginx + gatehouse"
unset multiplot
