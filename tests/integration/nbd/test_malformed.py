#!/usr/bin/env python3
"""Malformed clients get protocol errors or a closed connection, never a crash; the server keeps serving
everyone else (a qemu-img client runs alongside the whole time)."""
import socket
import struct

from nbdtest import OPTS_MAGIC, Client, Server, check, main, make_image, need, run

MiB = 1 << 20


def test(wd):
    need("qemu-img")
    img = wd("disk.raw")
    size = 8 * MiB
    make_image(img, size, [(0, size)])
    srv = Server(wd, img, raw=True)
    idle = [Client(srv.sock) for _ in range(8)]  # several sessions open at once

    # Handshake: bad option magic, unknown client flags, huge option length, unknown option, EXPORT_NAME of
    # an over-long name, disconnect in the middle of an option.
    c = Client(srv.sock, go=False)
    c.raw(b"BADMAGIC" + struct.pack(">II", 7, 0))
    check(c.closed(), "bad option magic not answered by a hang-up")
    s = socket.socket(socket.AF_UNIX)
    s.connect(srv.sock)
    s.recv(18)
    s.sendall(struct.pack(">I", 0x40))
    check(s.recv(1) == b"", "unknown client flags accepted")
    c = Client(srv.sock, go=False)
    c.raw(struct.pack(">QII", OPTS_MAGIC, 7, 0xFFFFFFF0))
    check(c.closed(), "4 GiB option length not refused")
    c = Client(srv.sock, go=False)
    check(c.option(0x1234, b"xyz")[0][0] == 0x80000001, "unknown option not NBD_REP_ERR_UNSUP")
    check(c.option(6, b"\0\0\0\xff\0\0")[0][0] == 0x80000003, "bad NBD_OPT_INFO not NBD_REP_ERR_INVALID")
    c.raw(struct.pack(">QII", OPTS_MAGIC, 1, 5000) + b"n" * 5000)
    check(c.closed(), "over-long export name not refused")
    c = Client(srv.sock, go=False)
    c.raw(struct.pack(">QII", OPTS_MAGIC, 7, 100) + b"half")
    c.s.close()

    # Transmission: unknown command, offsets past the end, bad flags, oversize read, then bad magic.
    c = Client(srv.sock)
    c.request(99, cookie=5)
    check(c.reply(5)[0] == 22, "unknown command not EINVAL")
    c.request("read", size - 100, 200, cookie=6)
    check(c.reply(6)[0] == 22, "read past the end not EINVAL")
    c.request("write", 2 ** 64 - 4096, 4096, cookie=7, payload=b"x" * 4096)
    check(c.reply(7)[0] == 28, "write past the end not ENOSPC")
    c.request("trim", size, 1, cookie=8)
    check(c.reply(8)[0] == 22, "trim past the end not EINVAL")
    c.request("read", 0, 64 * MiB, cookie=9)
    check(c.reply(9)[0] == 75, "64 MiB read not EOVERFLOW")
    c.request("read", 0, 16, flags=0x20, cookie=10)
    check(c.reply(10)[0] == 22, "unknown flag not EINVAL")
    c.request("flush", 1, 0, cookie=11)
    check(c.reply(11)[0] == 22, "flush with an offset not EINVAL")
    check(c.read(0, 4096) == open(img, "rb").read(4096), "the stream lost sync after errors")
    c.raw(b"\xde\xad\xbe\xef" + bytes(24))
    check(c.closed(), "bad request magic not answered by a hang-up")
    # A write whose payload would exceed 32 MiB cannot be skipped: hang-up.
    c = Client(srv.sock)
    c.request("write", 0, 0xFFFFFFFF)
    check(c.closed(), "4 GiB write not refused")
    # Disconnect in the middle of a write payload, and in the middle of a header.
    c = Client(srv.sock)
    c.request("write", 0, 65536, payload=b"y" * 1000)
    c.s.close()
    c = Client(srv.sock)
    c.raw(struct.pack(">IHH", 0x25609513, 0, 0))
    c.s.close()

    # Still alive, still serving, nothing was written by the broken requests.
    check(srv.alive(), "server died")
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", srv.uri, img])
    for c in idle:
        check(c.read(4096, 512) == open(img, "rb").read(8192)[4096:4608], "an idle session broke")
        c.close()
    check(srv.stop() == 0, "server did not exit cleanly: " + srv.stderr)


main(test)
