#!/usr/bin/env python3
"""vmsnap pack/info/verify/extract end to end on a real ext2 image, with qemu-img as an independent peer."""
import json, os, random, shutil, signal, stat, subprocess, sys, tempfile, time

VMSNAP = os.environ.get("VMSNAP", "build/vmsnap")
failures = []


def run(*args, ok=(0,), **kw):
    p = subprocess.run([VMSNAP, *args], capture_output=True, text=True, **kw)
    if p.returncode not in ok:
        raise AssertionError(f"vmsnap {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def flipped(src, dst, off):
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x10]))


def main():
    d = tempfile.mkdtemp(prefix="vmsnap-arc-it-")
    try:
        rnd = random.Random(4)
        files = os.path.join(d, "files")
        os.makedirs(os.path.join(files, "sub"))
        with open(os.path.join(files, "random.bin"), "wb") as f:
            f.write(rnd.randbytes(3 << 20))
        with open(os.path.join(files, "sub", "text.txt"), "w") as f:
            for i in range(60000):
                f.write(f"line {i}: the quick brown fox jumps over the lazy dog\n")
        img = os.path.join(d, "disk.raw")
        mkfs = shutil.which("mkfs.ext2") or "/usr/sbin/mkfs.ext2"
        subprocess.run([mkfs, "-q", "-F", "-d", files, img, "32M"], check=True, capture_output=True)
        mem = os.path.join(d, "mem.bin")
        with open(mem, "wb") as f:
            f.write(rnd.randbytes(1 << 20) + bytes(2 << 20) + b"page" * 100000)
        cfg = os.path.join(d, "cfg.json")
        with open(cfg, "w") as f:
            json.dump({"machine": "pc", "ram_mib": 256, "cpus": 1, "qemu_version": "7.2.0"}, f)
        arc = os.path.join(d, "a.vmsnap")

        p = run("pack", img, "--memory", mem, "--config", cfg, "-o", arc, "--compress", "zstd:3", "--threads", "2")
        check(p.stderr == "" and p.stdout == "", "pack prints nothing when not on a terminal")
        info = json.loads(run("info", arc, "--json").stdout)
        kinds = [s["kind"] for s in info["streams"]]
        check(kinds[:3] == ["disk", "memory", "config"], f"info lists disk, memory, config streams ({kinds})")
        disk = info["streams"][0]
        check(disk["size"] == os.path.getsize(img) and 0 < disk["stored"] < disk["size"],
              f"disk stream sizes: {disk['size']} logical, {disk['stored']} stored")
        check(info["qemu_version"] == "7.2.0" and info["config"]["ram_mib"] == 256, "info shows config and QEMU version")
        check(info["file_size"] == os.path.getsize(arc), "info file_size matches the file")
        check(run("verify", arc).returncode == 0, "verify of a sound archive exits 0")

        out = os.path.join(d, "out.raw")
        run("extract", arc, "--disk", "0", "-o", out)
        check(open(out, "rb").read() == open(img, "rb").read(), "extracted disk is byte-identical")
        st = os.stat(out)
        check(st.st_blocks * 512 < st.st_size, f"extracted disk has holes ({st.st_blocks * 512} of {st.st_size} bytes)")
        q = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", img, out], capture_output=True, text=True)
        check(q.returncode == 0, "qemu-img compare agrees: " + q.stdout.strip())
        run("extract", arc, "--memory", "-o", out)
        check(open(out, "rb").read() == open(mem, "rb").read(), "extracted memory stream is byte-identical")
        run("extract", arc, "--config", "-o", out)
        check(open(out, "rb").read() == open(cfg, "rb").read(), "extracted config is byte-identical")

        # damage: header, a data block, the directory; a truncated copy
        size = os.path.getsize(arc)
        bad = os.path.join(d, "bad.vmsnap")
        for off, what in ((20, "header"), (size // 3, "data block"), (size - 12, "directory")):
            flipped(arc, bad, off)
            p = run("verify", bad, ok=(1,))
            check(p.stderr.startswith("vmsnap: "), f"verify flags a flipped {what} byte at {off}: "
                  + p.stderr.splitlines()[0])
            if what == "data block":
                check("stream 'disk0' block" in p.stderr and "offset" in p.stderr,
                      "verify names the stream, block and offset")
            p = run("extract", bad, "--disk", "0", "-o", out + ".bad", ok=(1,))
            check(not os.path.exists(out + ".bad"), f"extract of damaged ({what}) archive leaves no output")
        shutil.copy(arc, bad)
        os.truncate(bad, size - 1000)
        check("truncated" in run("verify", bad, ok=(1,)).stderr, "verify says a truncated archive is truncated")

        # thin archive against the parent
        img2 = os.path.join(d, "disk2.raw")
        shutil.copy(img, img2)
        with open(img2, "r+b") as f:
            f.seek(5 << 20)
            f.write(b"changed" * 1000)
        child = os.path.join(d, "child.vmsnap")
        run("pack", img2, "-o", child, "--parent", arc)
        cinfo = json.loads(run("info", child, "--json").stdout)
        check(cinfo["parent"]["uuid"] == info["uuid"] and len(cinfo["parent_chain"]) == 1, "child records its parent")
        check(os.path.getsize(child) < os.path.getsize(arc) // 10,
              f"thin archive is small ({os.path.getsize(child)} vs {os.path.getsize(arc)} bytes)")
        run("extract", child, "--disk", "0", "-o", out)
        check(open(out, "rb").read() == open(img2, "rb").read(), "thin archive extracts byte-identical")
        check(run("verify", child).returncode == 0, "verify of the thin archive and its chain exits 0")
        os.rename(arc, arc + ".moved")
        p = run("extract", child, "--disk", "0", "-o", out + ".x", ok=(1,))
        check("not found" in p.stderr and len(p.stderr.splitlines()) == 1, "missing parent: " + p.stderr.strip())
        check(run("verify", child, ok=(1,)).returncode == 1, "verify with a missing parent exits 1")
        run("pack", img, "-o", arc)   # another archive under the parent's name
        p = run("verify", child, ok=(1,))
        check("UUID" in p.stderr, "mismatched parent: " + p.stderr.strip())

        # bad inputs and usage
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        o2 = os.path.join(d, "x.vmsnap")
        p = run("pack", fifo, "-o", o2, ok=(1,))
        check("FIFO" in p.stderr and not os.path.exists(o2), "a FIFO as disk: " + p.stderr.strip())
        p = run("pack", files, "-o", o2, ok=(1,))
        check("directory" in p.stderr and not os.path.exists(o2), "a directory as disk: " + p.stderr.strip())
        p = run("verify", files, ok=(1,))
        check("directory" in p.stderr, "a directory as archive: " + p.stderr.strip())
        check(run("verify", img, ok=(1,)).stderr.count("magic") == 1, "a raw image is not an archive (bad magic)")
        for args in (["pack", img], ["pack", img, "-o", o2, "--bogus"], ["extract", child, "-o", out],
                     ["pack", img, "-o", o2, "--compress", "zip"], ["info"]):
            check(run(*args, ok=(2,)).returncode == 2, "usage error exits 2: " + " ".join(args[:1] + args[2:]))
        check(not os.path.exists(o2), "no output after usage errors")

        # interrupted pack (memory from a pipe): no file under the final name, no temp left behind
        before = set(os.listdir(d))
        p = subprocess.Popen([VMSNAP, "pack", img, "--memory", fifo, "-o", o2], stderr=subprocess.PIPE)
        w = open(fifo, "wb")
        w.write(rnd.randbytes(1 << 20))
        w.flush()
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            w.write(b"x" * 65536)
            w.close()
        except BrokenPipeError:
            pass
        rc = p.wait(30)
        check(rc == 1 and not os.path.exists(o2) and set(os.listdir(d)) == before,
              f"interrupted pack exits 1 and leaves nothing ({p.stderr.read().decode().strip()})")

        # a really full disk: a 4 MiB tmpfs cannot hold the 32 MiB image's archive (ENOSPC mid-write)
        full = os.path.join(d, "full")
        os.mkdir(full)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", full],
                          capture_output=True).returncode == 0:
            try:
                out_full = os.path.join(full, "big.vmsnap")
                p = run("pack", img, "--memory", mem, "-o", out_full, "--compress", "none", ok=(1,))
                msg = p.stderr.strip()
                check(msg.startswith("vmsnap: ") and "No space left" in msg and msg.count("\n") == 0,
                      "full disk: one clear line (" + msg + ")")
                check(os.listdir(full) == [], "full disk: no file under the final name, no temp file left")
            finally:
                subprocess.run(["umount", full], capture_output=True)
        else:
            print("skip full-disk check: cannot mount a tmpfs here (needs root)")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
