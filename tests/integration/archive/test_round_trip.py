#!/usr/bin/env python3
"""pack, info, verify and extract agree on a sound archive of a real ext2 image, a memory file and a config: pack
prints nothing off a terminal, info lists the streams with their sizes, the config and the QEMU version, verify exits
0, and each extracted stream is byte-identical (the disk with its holes, qemu-img compare agreeing)."""
import json
import os
import subprocess

from archivetest import check, main, run, sample


def test(d):
    s = sample(d)
    check(s.pack.stderr == "" and s.pack.stdout == "", "pack prints nothing when not on a terminal")
    info = json.loads(run("info", s.arc, "--json").stdout)
    kinds = [st["kind"] for st in info["streams"]]
    check(kinds[:3] == ["disk", "memory", "config"], f"info lists disk, memory, config streams ({kinds})")
    disk = info["streams"][0]
    check(disk["size"] == os.path.getsize(s.img) and 0 < disk["stored"] < disk["size"],
          f"disk stream sizes: {disk['size']} logical, {disk['stored']} stored")
    check(info["qemu_version"] == "7.2.0" and info["config"]["ram_mib"] == 256, "info shows config and QEMU version")
    check(info["file_size"] == os.path.getsize(s.arc), "info file_size matches the file")
    check(run("verify", s.arc).returncode == 0, "verify of a sound archive exits 0")

    out = os.path.join(d, "out.raw")
    run("extract", s.arc, "--disk", "0", "-o", out)
    check(open(out, "rb").read() == open(s.img, "rb").read(), "extracted disk is byte-identical")
    st = os.stat(out)
    check(st.st_blocks * 512 < st.st_size, f"extracted disk has holes ({st.st_blocks * 512} of {st.st_size} bytes)")
    q = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", s.img, out], capture_output=True, text=True)
    check(q.returncode == 0, "qemu-img compare agrees: " + q.stdout.strip())
    run("extract", s.arc, "--memory", "-o", out)
    check(open(out, "rb").read() == open(s.mem, "rb").read(), "extracted memory stream is byte-identical")
    run("extract", s.arc, "--config", "-o", out)
    check(open(out, "rb").read() == open(s.cfg, "rb").read(), "extracted config is byte-identical")


main(test)
