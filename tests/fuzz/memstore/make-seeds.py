#!/usr/bin/env python3
"""Write the seed corpus of memstore-ws-fuzz: valid working-set records (docs/FORMAT.md, "Working set"). XXH64 is
computed here (no module needed) so the seeds pass the checksum and the fuzzer starts past it."""
import os
import struct

M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def rnd(acc, v):
    return rotl((acc + v * P2) & M, 31) * P1 & M


def xxh64(b, seed=0):
    n, i = len(b), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], struct.unpack_from("<Q", b, i + 8 * k)[0])
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4):
            h = ((h ^ rnd(0, v[k])) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, struct.unpack_from("<Q", b, i)[0]), 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ (struct.unpack_from("<I", b, i)[0] * P1 & M), 23) * P2 + P3) & M
        i += 4
    while i < n:
        h = rotl(h ^ (b[i] * P5 & M), 11) * P1 & M
        i += 1
    h = (h ^ (h >> 33)) * P2 & M
    h = (h ^ (h >> 29)) * P3 & M
    return h ^ (h >> 32)


def record(streams, entries):
    b = b"vmsnapws" + struct.pack("<IIIIQ", 1, 32, len(streams), len(entries), 0)
    for name, size in streams:
        b += struct.pack("<QB", size, len(name)) + name.encode()
    for s, off, pages in entries:
        b += struct.pack("<IIQ", s, pages, off)
    return b + struct.pack("<Q", xxh64(b))


out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
seeds = {
    "one-stream": record([("ram/mem", 256 << 20)], [(0, 0x100000, 256), (0, 0, 1), (0, 0xfff000, 1)]),
    "two-streams": record([("ram/mem", 1 << 20), ("ram/pc.ram", 64 << 10)], [(1, 0, 16), (0, 4096, 2)]),
    "empty": record([("ram/mem", 4096)], []),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
