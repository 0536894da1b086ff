"""Shared helpers for the NBD integration tests: images, a `vmsnap serve` process, a small NBD client that can
also send malformed bytes on purpose, the control socket, and the independent peers (qemu-img, qemu-io, libnbd).
Python 3 stdlib only."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

VMSNAP = os.environ.get("VMSNAP") or os.path.join(os.environ.get("VMSNAP_BUILDDIR", "build"), "vmsnap")
OPTS_MAGIC = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
CHUNK_MAGIC = 0x668E33EF
CMD = {"read": 0, "write": 1, "disc": 2, "flush": 3, "trim": 4, "cache": 5, "zero": 6, "status": 7}


def skip(msg):
    print("SKIP:", msg)
    sys.exit(77)


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            skip(t + " not installed")


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="vmsnap-nbd-it.")
        self.servers = []

    def __call__(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        for srv in self.servers:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        shutil.rmtree(self.path, ignore_errors=True)


def pack(img, archive):
    """Pack a raw image into a .vmsnap archive with vmsnap itself."""
    run([VMSNAP, "pack", img, "-o", archive, "--quiet"])
    return archive


def make_image(path, size, data_ranges, seed=1):
    """A sparse raw image: pseudo-random data in data_ranges [(off, len)], holes elsewhere."""
    import random
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for off, ln in data_ranges:
            f.seek(off)
            f.write(rnd.randbytes(ln))


class Server:
    """`vmsnap serve` on a Unix socket; base is an archive (raw=True: a raw image)."""

    def __init__(self, wd, base, overlay=None, read_only=False, control=False, raw=False, sock="nbd.sock",
                 extra=(), env=None):
        self.sock = wd(sock)
        self.control = wd(sock + ".ctl") if control else None
        args = [VMSNAP, "serve", base, "--socket", self.sock]
        if raw:
            args.append("--raw")
        if overlay:
            args += ["--overlay", overlay]
        if read_only:
            args.append("--read-only")
        if self.control:
            args += ["--control", self.control]
        args += list(extra)
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, env=env)
        wd.servers.append(self)
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("vmsnap serve exited %d: %s" % (self.proc.returncode,
                                                                     self.proc.stderr.read().decode()))
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                if not self.control or os.path.exists(self.control):
                    break
            except OSError:
                pass
            check(time.time() < deadline, "server socket never appeared")
            time.sleep(0.02)
        self.uri = "nbd+unix:///?socket=" + self.sock

    def alive(self):
        return self.proc.poll() is None

    def ctl(self, req):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(self.control)
        s.sendall((json.dumps(req) + "\n").encode())
        f = s.makefile("rb")
        line = f.readline()
        s.close()
        return json.loads(line)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("server did not exit after signal %d" % sig)
        self.stderr = self.proc.stderr.read().decode()
        return rc


def run(args, timeout=120, ok=True):
    p = subprocess.run(args, capture_output=True, timeout=timeout, text=True)
    if ok and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (" ".join(args), p.returncode, p.stdout,
                                                                       p.stderr))
    return p


class Client:
    """A minimal NBD client speaking the fixed newstyle handshake; `raw` lets tests send anything."""

    def __init__(self, path, structured=True, meta=True, go=True):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(path)
        self.structured = False
        hello = self.recv(18)
        check(struct.unpack(">QQH", hello)[:2] == (0x4E42444D41474943, OPTS_MAGIC), "bad greeting")
        self.raw(struct.pack(">I", 3))
        if not go:
            return
        if structured:
            check(self.option(8)[0][0] == 1, "structured replies refused")
            self.structured = True
        if meta and structured:
            q = b"base:allocation"
            reps = self.option(10, struct.pack(">II", 0, 1) + struct.pack(">I", len(q)) + q)
            check(reps[0][0] == 4, "base:allocation not offered")
        reps = self.option(7, struct.pack(">I", 0) + struct.pack(">H", 0))
        check(reps[-1][0] == 1, "NBD_OPT_GO failed: %r" % (reps,))
        for t, d in reps:
            if t == 3 and struct.unpack(">H", d[:2])[0] == 0:
                self.size, self.eflags = struct.unpack(">QH", d[2:])

    def raw(self, b):
        self.s.sendall(b)

    def recv(self, n):
        out = b""
        while len(out) < n:
            d = self.s.recv(n - len(out))
            if not d:
                raise EOFError("server closed the connection")
            out += d
        return out

    def closed(self):
        """True if the server hung up (reads EOF)."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def option(self, opt, data=b""):
        self.raw(struct.pack(">QII", OPTS_MAGIC, opt, len(data)) + data)
        reps = []
        while True:
            magic, o, typ, ln = struct.unpack(">QIII", self.recv(20))
            check(magic == REP_MAGIC and o == opt, "bad option reply")
            reps.append((typ, self.recv(ln)))
            if typ != 3 and typ != 4 and typ != 2:
                return reps

    def request(self, cmd, off=0, length=0, flags=0, cookie=1, payload=b""):
        self.raw(struct.pack(">IHHQQI", REQ_MAGIC, flags, CMD.get(cmd, cmd) if isinstance(cmd, str) else cmd,
                             cookie, off, length) + payload)

    def reply(self, cookie=1, read_len=0):
        """Returns (error, data) for simple or structured replies."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE_MAGIC:
            err, ck = struct.unpack(">IQ", self.recv(12))
            check(ck == cookie, "cookie mismatch")
            return err, (self.recv(read_len) if err == 0 and read_len else b"")
        check(magic == CHUNK_MAGIC, "bad reply magic %x" % magic)
        data, err = bytearray(read_len), 0
        extents = []
        while True:
            flags, typ, ck, ln = struct.unpack(">HHQI", self.recv(16))
            check(ck == cookie, "cookie mismatch")
            p = self.recv(ln)
            if typ == 1:
                o = struct.unpack(">Q", p[:8])[0]
                data[o - self.base_off:o - self.base_off + ln - 8] = p[8:]
            elif typ == 5:
                extents = [struct.unpack(">II", p[i:i + 8]) for i in range(4, ln, 8)]
            elif typ & 0x8000:
                err = struct.unpack(">I", p[:4])[0]
            if flags & 1:
                return err, (extents if typ == 5 else bytes(data))
            check(struct.unpack(">I", self.recv(4))[0] == CHUNK_MAGIC, "bad chunk magic")

    def read(self, off, n, cookie=1):
        self.base_off = off
        self.request("read", off, n, cookie=cookie)
        err, d = self.reply(cookie, n)
        check(err == 0, "read %d+%d failed: %d" % (off, n, err))
        return d

    def write(self, off, data, fua=False, cookie=1):
        self.request("write", off, len(data), 1 if fua else 0, cookie, data)
        err, _ = self.reply(cookie)
        check(err == 0, "write %d+%d failed: %d" % (off, len(data), err))

    def flush(self):
        self.request("flush")
        check(self.reply()[0] == 0, "flush failed")

    def close(self):
        try:
            self.request("disc")
        except OSError:
            pass
        self.s.close()


def main(fn):
    wd = Workdir()
    try:
        fn(wd)
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)
    finally:
        wd.cleanup()
    print("PASS")


MiB = 1 << 20


def packed_image(wd):
    """The image the peer tests serve, packed: 64 MiB plus a short last block (not a multiple of 4 KiB), data at
    the start, unaligned in the middle and at the very end, holes elsewhere. Returns (image, size, archive)."""
    img = wd("disk.raw")
    size = 64 * MiB + 4096 * 3 + 512
    make_image(img, size, [(0, 3 * MiB), (10 * MiB + 1234, 2 * MiB), (size - 20000, 20000)])
    return img, size, pack(img, wd("disk.vmsnap"))


def qemu_io(uri, cmds, ok=True):
    """qemu-io on a raw NBD export, one -c per command."""
    return run(["qemu-io", "-f", "raw"] + sum((["-c", c] for c in cmds), []) + [uri], ok=ok)


def extent_map(uri):
    """nbdinfo --map as rows [offset, length, type, ...]."""
    return [r.split() for r in run(["nbdinfo", "--map", uri]).stdout.split("\n") if r.strip()]
