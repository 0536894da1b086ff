
set terminal pngcairo size 1200,520 font ',10'
set output 'docs/bench/run2/chart.png'
set multiplot layout 1,2
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set key below
set grid ytics
set title 'Guest-visible pause: longest 5 ms heartbeat gap (dashed: idle)'
set ylabel 'ms (log scale)'
set logscale y
set yrange [1:*]
set arrow 1 from graph 0, first 8.419 to graph 1, first 8.419 nohead dt 2 lc rgb 'gray40'
set label 1 sprintf('idle %.0f ms', 8.419) at graph 0.01, first 10.944 tc rgb 'gray40' front
plot 'docs/bench/run2/chart-pause_ms.dat' using 2:3:4:xtic(1) title 'vmsnap snap --mode live', 'docs/bench/run2/chart-pause_ms.dat' using 5:6:7:xtic(1) title 'vmsnap snap --mode stop', 'docs/bench/run2/chart-pause_ms.dat' using 8:9:10:xtic(1) title 'seed-000 stop+exec:cat+lz4', 'docs/bench/run2/chart-pause_ms.dat' using 11:12:13:xtic(1) title 'QEMU savevm (snapshot-save)'
unset logscale y
unset arrow 1
unset label 1
set yrange [0:*]
set title 'Restore: start to guest running'
set ylabel 's'
plot 'docs/bench/run2/chart-restore_s.dat' using 2:3:4:xtic(1) title 'vmsnap snap --mode live', 'docs/bench/run2/chart-restore_s.dat' using 5:6:7:xtic(1) title 'vmsnap snap --mode stop', 'docs/bench/run2/chart-restore_s.dat' using 8:9:10:xtic(1) title 'seed-000 stop+exec:cat+lz4', 'docs/bench/run2/chart-restore_s.dat' using 11:12:13:xtic(1) title 'QEMU savevm (snapshot-save)'
unset multiplot
