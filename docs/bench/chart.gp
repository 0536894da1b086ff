
set terminal pngcairo size 1800,560 font ',10'
set output 'docs/bench/chart.png'
set multiplot layout 1,3
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set key below maxrows 3
set grid ytics
set title 'Guest-visible pause: longest 5 ms heartbeat gap (dashed: idle)'
set ylabel 'ms (log scale)'
set logscale y
set yrange [1:*]
set arrow 1 from graph 0, first 5.940 to graph 1, first 5.940 nohead dt 2 lc rgb 'gray40'
set label 1 sprintf('idle %.0f ms', 5.940) at graph 0.01, first 7.722 tc rgb 'gray40' front
plot 'docs/bench/chart-pause_ms.dat' using 2:3:4:xtic(1) title 'vmsnap snap --mode live' lc rgb '#7b2cbf', 'docs/bench/chart-pause_ms.dat' using 5:6:7:xtic(1) title 'vmsnap snap --mode stop' lc rgb '#c77dff', 'docs/bench/chart-pause_ms.dat' using 8:9:10:xtic(1) title 'seed-000 stop+exec:cat+lz4' lc rgb '#2a9d8f', 'docs/bench/chart-pause_ms.dat' using 11:12:13:xtic(1) title 'QEMU savevm (snapshot-save)' lc rgb '#e9c46a'

unset logscale y
unset arrow 1
unset label 1
set yrange [0:*]
set title 'Restore: start to guest running'
set ylabel 's'
plot 'docs/bench/chart-restore_s.dat' using 2:3:4:xtic(1) title 'vmsnap boot (lazy, default)' lc rgb '#7b2cbf', 'docs/bench/chart-restore_s.dat' using 5:6:7:xtic(1) title 'vmsnap boot --eager' lc rgb '#e76f51', 'docs/bench/chart-restore_s.dat' using 8:9:10:xtic(1) title 'vmsnap boot (lazy) of --mode stop' lc rgb '#c77dff', 'docs/bench/chart-restore_s.dat' using 11:12:13:xtic(1) title 'seed-000 -incoming (lz4 -dc)' lc rgb '#2a9d8f', 'docs/bench/chart-restore_s.dat' using 14:15:16:xtic(1) title 'QEMU -loadvm' lc rgb '#e9c46a'
set title 'Restore + the guest checking all its RAM once'
set ylabel 's'
plot 'docs/bench/chart-running_checked_s.dat' using 2:3:4:xtic(1) title 'vmsnap boot (lazy, default)' lc rgb '#7b2cbf', 'docs/bench/chart-running_checked_s.dat' using 5:6:7:xtic(1) title 'vmsnap boot --eager' lc rgb '#e76f51', 'docs/bench/chart-running_checked_s.dat' using 8:9:10:xtic(1) title 'vmsnap boot (lazy) of --mode stop' lc rgb '#c77dff', 'docs/bench/chart-running_checked_s.dat' using 11:12:13:xtic(1) title 'seed-000 -incoming (lz4 -dc)' lc rgb '#2a9d8f', 'docs/bench/chart-running_checked_s.dat' using 14:15:16:xtic(1) title 'QEMU -loadvm' lc rgb '#e9c46a'

unset multiplot
