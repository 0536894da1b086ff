#!/usr/bin/env python3
"""vmsnap pack reads qcow2 images itself: every layout qemu-img/qemu-io can produce packs to the same bytes as
`qemu-img convert -O raw`, and damaged images are refused with one line naming the file."""
import os, random, shutil, struct, subprocess, sys, tempfile

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def vmsnap(*args):
    return subprocess.run([VMSNAP, *args], capture_output=True, text=True)


def io(img, *cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    sh(*args, img)


def roundtrip(d, img, what, fmt=None, extra=()):
    """pack + extract must give exactly what qemu-img convert gives."""
    arc, out, ref = (os.path.join(d, n) for n in ("a.vmsnap", "out.raw", "ref.raw"))
    for p in (arc, out, ref):
        if os.path.exists(p):
            os.unlink(p)
    p = vmsnap("pack", img, "-o", arc, *(["--format", fmt] if fmt else []), *extra)
    if p.returncode != 0:
        check(False, f"{what}: pack failed: {p.stderr.strip()}")
        return
    p = vmsnap("extract", arc, "--disk", "0", "-o", out)
    check(p.returncode == 0, f"{what}: extract ({p.stderr.strip()})")
    sh("qemu-img", "convert", "-O", "raw", img, ref)
    with open(out, "rb") as a, open(ref, "rb") as b:
        same = a.read() == b.read()
    check(same, f"{what}: extracted disk equals qemu-img convert output byte for byte")
    if same:
        c = subprocess.run(["qemu-img", "compare", "-f", "raw", out, img], capture_output=True)
        check(c.returncode == 0, f"{what}: qemu-img compare agrees")


def fill(img, size):
    """Data, unaligned writes, zeroed ranges, discarded clusters, all across cluster boundaries."""
    io(img, "write -P 0xab 0 64k", "write -P 0xcd 1000k 300k", "write -P 0x11 5000 3000",
       "write -P 0x01 2M 256k", "write -z 2M 128k", "write -P 0x02 4M 512k", "discard 4M 256k",
       f"write -P 0x7e {size - 4096} 4096")


def refused(d, img, what, needle, extra=()):
    arc = os.path.join(d, "bad.vmsnap")
    p = vmsnap("pack", img, "-o", arc, *extra)
    err = p.stderr.strip()
    ok = (p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err and os.path.basename(img) in err
          and needle in err and not os.path.exists(arc))
    check(ok, f"{what}: exit {p.returncode}, one line naming the file and '{needle}': {err}")


def patched(src, dst, off, data):
    if src != dst:
        shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(off)
        f.write(data)
    return dst


def be64(path, off):
    with open(path, "rb") as f:
        f.seek(off)
        return struct.unpack(">Q", f.read(8))[0]


def guest_written_header(d):
    """A guest's raw disk whose first bytes are a qcow2 header naming a host file: pack stores the disk's own
    bytes, never the host file's, whatever the disk is called (unless it is named .qcow2)."""
    host = os.path.join(d, "host-secret")
    with open(host, "wb") as f:
        f.write(b"HOST-SECRET-" * 4096)
    empty = os.path.join(d, "empty")
    os.mkdir(empty)
    evil = os.path.join(d, "evil.qcow2")
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", host, "-F", "raw", evil, "48K")
    for name in ("guest.raw", "guest.img", "guest"):
        disk = os.path.join(d, name)
        shutil.copy(evil, disk)
        with open(disk, "ab") as f:
            f.write(b"\0" * (1 << 20))
        arc, out = os.path.join(d, "g.vmsnap"), os.path.join(d, "g.out")
        p = vmsnap("pack", disk, "-o", arc)
        check(p.returncode == 0 and "starts with a qcow2 header" in p.stderr and name in p.stderr,
              f"{name}: packed as raw with a note ({p.stderr.strip()})")
        p = vmsnap("extract", arc, "--disk", "0", "-o", out)
        with open(out, "rb") as a, open(disk, "rb") as b:
            got = a.read()
            check(p.returncode == 0 and got == b.read() and b"HOST-SECRET" not in got,
                  f"{name}: the archive holds the disk's own bytes, not the host file")
        os.unlink(arc)
        os.unlink(out)
        # Even read as qcow2 on purpose, the host file is not followed unless asked and allowed.
        refused(d, disk, f"{name} --format qcow2: backing file not followed", "--follow-backing",
                extra=["--format", "qcow2"])
        refused(d, disk, f"{name} --format qcow2 --follow-backing: host file outside the directory", "outside",
                extra=["--format", "qcow2", "--follow-backing=" + empty])
        os.unlink(disk)


def main():
    d = tempfile.mkdtemp(prefix="vmsnap-img-it-")
    try:
        size = 8 * 1024 * 1024 + 1536
        for compat in ("0.10", "1.1"):
            for cs in ("4k", "64k", "2M"):
                img = os.path.join(d, f"x-{compat}-{cs}.qcow2")
                sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"compat={compat},cluster_size={cs}", img,
                   str(size))
                fill(img, size)
                roundtrip(d, img, f"qcow2 compat={compat} cluster_size={cs}")

        # Compressed clusters from real-looking content (random, text, zeros), zlib and zstd.
        rnd = random.Random(7)
        raw = os.path.join(d, "content.raw")
        with open(raw, "wb") as f:
            for i in range(40):
                f.write(rnd.randbytes(37000) + b"vmsnap text " * 9000 + bytes(50000))
        for ctype in ("zlib", "zstd"):
            for cs in ("4k", "64k"):
                img = os.path.join(d, f"c-{ctype}-{cs}.qcow2")
                sh("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
                   f"compression_type={ctype},cluster_size={cs}", raw, img)
                roundtrip(d, img, f"compressed clusters ({ctype}, {cs})")
        io(img, "write -P 0x33 100k 10k")      # a compressed image partly rewritten
        roundtrip(d, img, "compressed image with rewritten clusters")

        # Extended L2 entries: subclusters allocated, zeroed and unallocated inside one cluster.
        img = os.path.join(d, "ext.qcow2")
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", img, str(size))
        fill(img, size)
        io(img, "write -P 0x44 70k 2k", "write -P 0x45 200k 8k", "write -z 202k 2k", "write -P 0x46 7M 100k")
        roundtrip(d, img, "extended L2 entries (subclusters)")

        # Backing chains: qcow2 over qcow2 over raw, relative names, overlay larger than its backing.
        base = os.path.join(d, "base.raw")
        with open(base, "wb") as f:
            f.write(rnd.randbytes(3 << 20))
        mid = os.path.join(d, "mid.qcow2")
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid, "4M")
        io(mid, "write -P 0x55 1M 64k", "write -z 2M 64k")
        top = os.path.join(d, "top.qcow2")
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top, str(size))
        io(top, "write -P 0x66 1020k 8k", "discard 0 64k", "write -P 0x67 6M 64k")
        roundtrip(d, top, "qcow2 -> qcow2 -> raw backing chain, overlay larger than backing",
                  extra=["--follow-backing"])
        refused(d, top, "backing chain without --follow-backing", "--follow-backing")
        refused(d, patched(top, os.path.join(d, "lost-backing.qcow2"), be64(top, 8), b"nothere"),
                "missing backing file", "nothere", extra=["--follow-backing"])
        guest_written_header(d)

        # --format: raw on a qcow2 packs the container bytes; qcow2 on a raw file is refused.
        roundtrip(d, base, "raw input (auto)")
        img = os.path.join(d, "x-1.1-64k.qcow2")
        arc = os.path.join(d, "f.vmsnap")
        p = vmsnap("pack", img, "--format", "raw", "-o", arc)
        ok = p.returncode == 0 and vmsnap("extract", arc, "--disk", "0", "-o", os.path.join(d, "f.out")).returncode == 0
        with open(img, "rb") as a, open(os.path.join(d, "f.out"), "rb") as b:
            check(ok and a.read() == b.read(), "--format raw packs a qcow2 file's own bytes")
        p = vmsnap("pack", base, "--format", "qcow2", "-o", arc + "2")
        check(p.returncode == 1 and "not a qcow2 image" in p.stderr, f"--format qcow2 on raw refused: {p.stderr.strip()}")
        p = vmsnap("pack", base, "--format", "vmdk", "-o", arc + "2")
        check(p.returncode == 2, "--format vmdk is a usage error")

        # Damaged and unsupported images: one line, exit 1, nothing written.
        good = os.path.join(d, "x-1.1-64k.qcow2")
        l1 = be64(good, 40)
        l2 = be64(good, l1) & 0x00fffffffffffe00
        fsize = os.path.getsize(good)
        bad = lambda n: os.path.join(d, n + ".qcow2")
        refused(d, patched(good, bad("cbits"), 20, struct.pack(">I", 22)), "cluster_bits 22", "cluster_bits 22")
        refused(d, patched(good, bad("cbits8"), 20, struct.pack(">I", 8)), "cluster_bits 8", "cluster_bits 8")
        refused(d, patched(good, bad("v4"), 4, struct.pack(">I", 4)), "version 4", "version 4")
        refused(d, patched(good, bad("incompat5"), 72, struct.pack(">Q", 1 << 5)), "unknown incompatible bit",
                "feature bit 5")
        with open(good, "rb") as f:   # the image's own feature name table names the unknown bit
            c0 = f.read(65536)
        ft = c0.index(struct.pack(">I", 0x6803f857)) + 8
        named = patched(good, bad("named5"), 72, struct.pack(">Q", 1 << 5))
        patched(named, named, ft, bytes([0, 5]) + b"frobnication".ljust(46, b"\0"))
        refused(d, named, "unknown incompatible bit named by the image", "bit 5 (frobnication)")
        refused(d, patched(good, bad("corrupt"), 72, struct.pack(">Q", 2)), "corrupt bit", "corrupt")
        refused(d, patched(good, bad("crypt"), 32, struct.pack(">I", 2)), "LUKS encryption", "encrypted")
        refused(d, patched(good, bad("hdrlen"), 100, struct.pack(">I", 1 << 20)), "header_length", "header_length")
        refused(d, patched(good, bad("l1off"), 40, struct.pack(">Q", fsize * 4)), "L1 table beyond the file",
                "L1 table")
        refused(d, patched(good, bad("l1unal"), 40, struct.pack(">Q", l1 + 8)), "L1 table unaligned", "L1 table")
        refused(d, patched(good, bad("l1size"), 36, struct.pack(">I", 0)), "L1 too small for the size", "L1 table")
        refused(d, patched(good, bad("bigsize"), 24, struct.pack(">Q", 1 << 63)), "virtual size 2^63", "size")
        refused(d, patched(good, bad("l1ent"), l1, struct.pack(">Q", (fsize + (1 << 20)) & ~0xffff)),
                "L1 entry outside the file", "L1 entry 0")
        refused(d, patched(good, bad("l2res"), l2, struct.pack(">Q", (1 << 63) | 0x1fe | be64(good, l2))),
                "L2 entry reserved bits", "reserved bits")
        refused(d, patched(good, bad("l2out"), l2, struct.pack(">Q", (1 << 63) | (1 << 40))),
                "L2 entry outside the file", "outside the file")
        with open(good, "rb") as f:
            hlen = struct.unpack(">I", f.read(104)[100:104])[0]
        refused(d, patched(good, bad("ext"), hlen, struct.pack(">II", 0x12345678, 1 << 20)),
                "header extension length", "header extension")
        cimg = os.path.join(d, "c-zlib-64k.qcow2")
        cl2 = be64(cimg, be64(cimg, 40)) & 0x00fffffffffffe00
        ent = be64(cimg, cl2)
        host = ent & ((1 << 54) - 1)
        refused(d, patched(cimg, bad("cdata"), host, bytes(64)), "garbled compressed cluster", "decompress")
        trunc = bad("trunc")
        shutil.copy(good, trunc)
        os.truncate(trunc, l2 + 100)
        refused(d, trunc, "truncated inside an L2 table", "outside the file")
        dfile = bad("datafile")
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={dfile}.data", dfile, "1M")
        refused(d, dfile, "external data file", "external data file")
        with open(bad("short"), "wb") as f:
            f.write(b"QFI\xfb\0\0\0\3")
        refused(d, bad("short"), "8-byte qcow2", "too short")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
