#!/usr/bin/env bash
# Archive benchmark: pack/extract throughput and stored size of vmsnap against lz4 -1, zstd -3 -T0 and
# qemu-img convert -c -O qcow2 on the same inputs, plus random 4 KiB read latency through the reader.
# Usage: bench/archive/run.sh [BUILD-DIR]   (inputs and results in bench/out/archive)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
V=$build/vmsnap
out=$src/bench/out/archive
mkdir -p "$out"
cd "$out"

# Inputs: a real ext2 filesystem holding real files, and a real QEMU migration stream of a booting VM.
if [ ! -f fs.raw ]; then
  mkdir -p fsdir && cp -a /usr/lib/python3 /usr/share/doc fsdir/ 2>/dev/null || true
  mkfs.ext2 -q -F -d fsdir fs.raw 512M && rm -rf fsdir
fi
if [ ! -f mem.bin ]; then
  # No guest kernel on this host: real file contents (150 MiB of fs.raw) are loaded into guest RAM with QEMU's
  # generic loader so the stream carries real data pages besides the firmware's.
  head -c 150M fs.raw > ramfill.bin
  sock=$out/qmp.sock
  qemu-system-x86_64 -accel tcg -m 256 -display none -daemonize -pidfile qemu.pid -qmp unix:$sock,server=on,wait=off \
    -device loader,file=$out/ramfill.bin,addr=0x1000000,force-raw=on -serial null
  sleep 5
  python3 - "$sock" "$out/mem.bin" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def cmd(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: return r
f.readline(); cmd("qmp_capabilities")
cmd("migrate-set-parameters", **{"max-bandwidth": 10**10})
cmd("migrate", uri="exec:cat > " + sys.argv[2])
while cmd("query-migrate")["return"].get("status") not in ("completed", "failed"): time.sleep(0.2)
cmd("quit")
PY
fi

cc -O2 -I"$src/src" "$src/bench/archive/readlat.c" "$build/libvmsnap.a" -o readlat $(pkg-config --libs liblz4 libzstd libxxhash jansson) -lpthread

t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
row() { printf "| %-8s | %-34s | %8.1f | %7.2f | %8.1f | %7.2f | %11s |\n" "$1" "$2" "$(echo "$3/1048576" | bc -l)" "$4" \
          "$(echo "$5/$4/1048576" | bc -l)" "${6:-0}" "${7:--}"; }
echo "| input | tool | stored MiB | pack s | pack MiB/s | extract s | ratio |"
echo "|---|---|---|---|---|---|---|"
for in in fs.raw mem.bin; do
  size=$(stat -c %s $in)
  if [ $in = fs.raw ]; then inp=($in); sel=(--disk 0); else inp=(--memory $in); sel=(--memory); fi
  for c in "lz4 1" "lz4 2" "zstd 1" "zstd 2"; do
    set -- $c
    p=$(t $V pack "${inp[@]}" -o a.vmsnap --compress $1 --threads $2 --quiet)
    rm -f x.out; x=$(t $V extract a.vmsnap "${sel[@]}" -o x.out --quiet)
    cmp -s x.out $in || echo "MISMATCH $in $c"
    s=$(stat -c %s a.vmsnap)
    row $in "vmsnap $1 -T$2" $s $p $size $x "$(echo "$size/$s" | bc -l | cut -c1-5)"
    [ "$in $c" = "fs.raw lz4 2" ] && cp a.vmsnap fs-lz4.vmsnap
  done
  p=$(t lz4 -1 -f -q $in c.lz4); x=$(t lz4 -d -f -q c.lz4 x.out); s=$(stat -c %s c.lz4)
  row $in "lz4 -1" $s $p $size $x "$(echo "$size/$s" | bc -l | cut -c1-5)"
  p=$(t zstd -3 -T0 -f -q $in -o c.zst); x=$(t zstd -d -f -q c.zst -o x.out); s=$(stat -c %s c.zst)
  row $in "zstd -3 -T0" $s $p $size $x "$(echo "$size/$s" | bc -l | cut -c1-5)"
  if [ $in = fs.raw ]; then
    p=$(t qemu-img convert -c -O qcow2 $in c.qcow2); x=$(t qemu-img convert -O raw c.qcow2 x.out); s=$(stat -c %s c.qcow2)
    row $in "qemu-img convert -c -O qcow2" $s $p $size $x "$(echo "$size/$s" | bc -l | cut -c1-5)"
  fi
done
echo
echo "random 4 KiB reads, fs.raw packed with lz4 (64 KiB blocks):"
./readlat fs-lz4.vmsnap 3000
truncate -s 1T tera.raw && dd if=fs.raw of=tera.raw bs=1M count=4 seek=500000 conv=notrunc status=none
echo "1 TiB sparse disk: pack $(t $V pack tera.raw -o tera.vmsnap --quiet) s, $(stat -c %s tera.vmsnap) bytes"
./readlat tera.vmsnap 1000
rm -f tera.raw tera.vmsnap x.out c.* a.vmsnap
