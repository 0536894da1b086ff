#!/usr/bin/env python3
"""Write the seed corpus of fuzz-nbd-session: client byte streams for whole sessions (proto.md)."""
import os
import struct
import sys

OPTS = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", OPTS, o, len(data)) + data


def req(typ, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, length) + payload


def meta(names):
    d = struct.pack(">I", 0) + struct.pack(">I", len(names))
    for n in names:
        d += struct.pack(">I", len(n)) + n
    return d


def go(name=b"", infos=(3,)):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


seeds = {
    "go-structured": struct.pack(">I", 3) + opt(8) + opt(10, meta([b"base:allocation"])) + opt(7, go())
    + req(1, 4000, 200, 1, 1, b"\xab" * 200) + req(0, 0, 8192, 0, 2) + req(7, 0, 65536, 0, 3)
    + req(7, 0, 100, 8, 4) + req(4, 8192, 8192, 0, 5) + req(6, 100, 5000, 2, 6) + req(3, cookie=7)
    + req(0, 1 << 20, 10, 0, 8) + req(42, cookie=9) + req(2),
    "export-name": struct.pack(">I", 1) + opt(1, b"disk") + req(0, 0, 512) + req(1, 512, 16, 0, 2, b"x" * 16)
    + req(3, cookie=3) + req(2),
    "options": struct.pack(">I", 3) + opt(3) + opt(6, go(b"x", (0, 1, 2, 3))) + opt(9, meta([b"base:"]))
    + opt(99, b"junk") + opt(5) + opt(2),
    "bad-magic": struct.pack(">I", 3) + opt(7, go()) + b"\x00" * 28,
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
