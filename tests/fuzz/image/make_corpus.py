#!/usr/bin/env python3
"""Write the seed corpus of fuzz-image-qcow2: tiny qcow2 images (512 B - 4 KiB clusters) made by qemu-img/qemu-io,
covering v2/v3, data, zero and discarded clusters, zlib and zstd compression and a backing file name."""
import os, subprocess, sys, tempfile

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def run(*a):
    subprocess.run(a, check=True, capture_output=True)


def make(name, opts, size, cmds=(), convert=None):
    d = tempfile.mkdtemp()
    img = os.path.join(d, "x.qcow2")
    if convert:
        raw = os.path.join(d, "x.raw")
        with open(raw, "wb") as f:
            f.write((b"vmsnap fuzz " * 200)[:2048] + bytes(2048) + bytes(range(256)) * 8)
        run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", opts, raw, img)
    else:
        with open(os.path.join(d, "base.raw"), "wb") as f:
            f.write(b"base" * 1024)
        run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, size)
    for c in cmds:
        run("qemu-io", "-f", "qcow2", "-c", c, img)
    with open(img, "rb") as f, open(os.path.join(out, name), "wb") as g:
        g.write(f.read())
    run("rm", "-rf", d)


os.makedirs(out, exist_ok=True)
make("v2-512", "compat=0.10,cluster_size=512", "64k", ["write -P 0xab 0 1k", "write -P 0xcd 3000 700"])
make("v3-512", "compat=1.1,cluster_size=512", "64k", ["write -P 0xab 512 1k", "write -z 4k 1k", "discard 512 512"])
make("v3-1k-big", "compat=1.1,cluster_size=1024", "16M", ["write -P 0x11 8M 1k"])
make("zlib-512", "compression_type=zlib,cluster_size=512", None, convert=True)
make("zstd-512", "compression_type=zstd,cluster_size=512", None, convert=True)
make("backing-512", "cluster_size=512,backing_file=base.raw,backing_fmt=raw", "8k", ["write -P 1 1k 1k"])
sys.exit(0)
