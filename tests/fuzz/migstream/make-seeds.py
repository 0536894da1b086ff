#!/usr/bin/env python3
"""Make small test streams from a real QEMU migration stream (an independent Python reading of the format,
docs/MIGRATION-STREAM.md): keeps header, configuration and ram setup as captured, a few page records, and the
device state. Command sections (QEMU 10's SWITCHOVER_START) and an END section (precopy) are kept, after the
pages. Writes:
  OUT/NAME.stream   few pages of each kind, the whole device state and JSON description (unit tests)
  OUT/NAME.json     what a parser must find in it (counts, block list, an FNV-1a digest of split pages)
  CORPUS/PREFIX*    smaller variants for the fuzzer (device state cut to two devices)
Usage: make-seeds.py CAPTURED-STREAM OUT CORPUS [NAME]   (NAME: default real-trimmed, with no corpus prefix)"""
import json, struct, sys

PAGE = 4096


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def parse(d):
    """-> prefix bytes (header..end of ram setup), list of records (block, off, kind, body), tail bytes."""
    i = 8
    assert d[:8] == b"QEVM\0\0\0\3"
    assert d[i] == 7
    n = struct.unpack(">I", d[i + 1:i + 5])[0]
    i += 5 + n
    assert d[i] == 1  # ram START (no configuration subsections in these captures)
    sid = struct.unpack(">I", d[i + 1:i + 5])[0]
    ln = d[i + 5]
    i += 6 + ln + 8
    total = struct.unpack(">Q", d[i:i + 8])[0] & ~0xfff
    i += 8
    blocks, s = [], 0
    while s < total:
        ln = d[i]
        name = d[i + 1:i + 1 + ln].decode()
        size = struct.unpack(">Q", d[i + 1 + ln:i + 9 + ln])[0]
        blocks.append((name, size))
        s += size
        i += 9 + ln
    assert struct.unpack(">Q", d[i:i + 8])[0] == 0x10
    i += 8 + 5
    prefix = d[:i]
    recs, cmds, end, last = [], b"", False, None
    while d[i] in (2, 3, 8):
        if d[i] == 8:  # be16 command, be16 length, data
            ln = struct.unpack(">H", d[i + 3:i + 5])[0]
            cmds += d[i:i + 5 + ln]
            i += 5 + ln
            continue
        end |= d[i] == 3
        i += 5
        while True:
            v = struct.unpack(">Q", d[i:i + 8])[0]
            i += 8
            fl, off = v & 0xfff, v & ~0xfff
            if fl == 0x10:
                break
            if not fl & 0x20:
                ln = d[i]
                last = d[i + 1:i + 1 + ln].decode()
                i += 1 + ln
            kind = fl & ~0x20
            blen = 1 if kind == 2 else PAGE
            assert kind in (2, 8)
            recs.append((last, off, kind, d[i:i + blen]))
            i += blen
        i += 5
    return prefix, sid, blocks, recs, cmds, end, d[i:]


def emit(sid, recs, kind=2):
    out, last = bytearray([kind]) + struct.pack(">I", sid), None
    for blk, off, kind, body in recs:
        cont = blk == last
        out += struct.pack(">Q", off | kind | (0x20 if cont else 0))
        if not cont:
            out += bytes([len(blk)]) + blk.encode()
            last = blk
        out += body
    return bytes(out + struct.pack(">Q", 0x10) + b"\x7e" + struct.pack(">I", sid))


def desc_at(tail):
    """Offset of the JSON description: after EOF (0x00), 0x06 and its be32 length, which reaches the end."""
    for k in range(len(tail) - 6, -1, -1):
        if tail[k:k + 2] == b"\0\6" and struct.unpack(">I", tail[k + 2:k + 6])[0] == len(tail) - k - 6:
            return k + 6
    raise ValueError("no JSON description")


def cut_tail(tail, keep):
    """The first `keep` device sections, EOF and a JSON description listing only them."""
    js = desc_at(tail)
    desc = json.loads(tail[js:])
    desc["devices"] = desc["devices"][:keep]
    # section k+1 starts after section k's footer: find the (keep+1)-th device's header
    nxt = json.loads(tail[js:])["devices"][keep]
    pat = bytes([len(nxt["name"])]) + nxt["name"].encode() + struct.pack(">I", nxt["instance_id"])
    pos = tail.find(pat) - 5
    j = json.dumps(desc).encode()
    return tail[:pos] + b"\0\6" + struct.pack(">I", len(j)) + j


def main():
    d = open(sys.argv[1], "rb").read()
    out, corpus = sys.argv[2], sys.argv[3]
    name = sys.argv[4] if len(sys.argv) > 4 else "real-trimmed"
    cpre = "" if name == "real-trimmed" else name + "-"
    prefix, sid, blocks, recs, cmds, end, tail = parse(d)
    tail = cmds + (emit(sid, [], 3) if end else b"") + tail
    main_blk = blocks[0][0]
    data = [r for r in recs if r[0] == main_blk and r[2] == 8]
    zero = [r for r in recs if r[0] == main_blk and r[2] == 2]
    other = [r for r in recs if r[0] != main_blk]
    pick = data[:24] + zero[:8] + other[:3] + data[24:26]  # blocks interleave; data[24:26] after another block
    pick.append((main_blk, data[0][1], 2, b"\0"))         # a page zeroed after it was sent
    s = prefix + emit(sid, pick[:20]) + emit(sid, pick[20:]) + tail
    open(f"{out}/{name}.stream", "wb").write(s)
    h, final = 0xcbf29ce484222325, {}
    for blk, off, kind, body in pick:
        if blk == main_blk:
            final[off] = body if kind == 8 else None
    for off in sorted(final):
        h = fnv(h, struct.pack("<Q", off))
        h = fnv(h, final[off] if final[off] is not None else b"\0" * 0)
    desc = json.loads(tail[desc_at(tail):])
    exp = {"pages": sum(1 for r in pick if r[0] == main_blk), "zero_pages": sum(1 for r in pick if r[0] == main_blk and r[2] == 2),
           "kept_pages": len(other[:3]), "blocks": blocks, "machine": prefix[13:13 + prefix[12]].decode(),
           "devices": len(desc["devices"]), "split": main_blk, "digest": f"{h:016x}", "bytes": len(s)}
    json.dump(exp, open(f"{out}/{name}.json", "w"), indent=1)
    small = cut_tail(tail, 2)
    open(f"{corpus}/{cpre}few-pages", "wb").write(prefix + emit(sid, pick[:3] + other[:1] + zero[:2]) + small)
    open(f"{corpus}/{cpre}no-pages", "wb").write(prefix + small)
    open(f"{corpus}/{cpre}two-sections", "wb").write(prefix + emit(sid, zero[:2]) + emit(sid, zero[2:3] + data[:1])
                                                     + small)
    print(json.dumps(exp))


main()
