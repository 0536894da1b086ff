#!/usr/bin/env python3
"""`mem load` is boot's feeder: when QEMU reports the incoming migration "cancelled" (not "failed"), the load ends at
once with that status and QEMU's words, and the fd is dropped with closefd; the pipe QEMU reads was enlarged to
1 MiB. A fake QMP server (no QEMU: QEMU has no way to cancel an incoming migration on demand) takes the pipe's read
end with getfd, reports the migration cancelled and records what it is sent.

A load QEMU stops reading (the fake keeps the read end, reads nothing and says "active") is reported as stalled once
the bytes in the pipe sit there unread (1 s here, VMSNAP_TEST_LOAD_STALL_S), not waited on until the 600 s
timeout."""
import array
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import fcntl

VMSNAP = os.environ.get("VMSNAP") or os.path.join(os.environ.get("VMSNAP_BUILDDIR", "build"), "vmsnap")
WHY = "fake: incoming migration cancelled by the operator"
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def lines_and_fds(c):
    """Yield (message, fds received with it) from a QMP client connection, keeping SCM_RIGHTS fds."""
    buf, fds = b"", []
    while True:
        anc = socket.CMSG_SPACE(4 * array.array("i").itemsize)
        data, ancdata, _, _ = c.recvmsg(65536, anc)
        for level, typ, cdata in ancdata:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                fds.extend(a)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line), fds
                fds = []


def drain(fd):
    with os.fdopen(fd, "rb") as f:
        while f.read(65536):
            pass


def serve(srv, log, pipe_sizes, stall):
    c, _ = srv.accept()
    with c:
        send = lambda m: c.sendall(json.dumps(m).encode() + b"\r\n")  # noqa: E731
        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                      "capabilities": []}})
        for m, fds in lines_and_fds(c):
            cmd = m.get("execute")
            log.append((cmd, m.get("arguments", {})))
            for fd in fds:   # read like QEMU, so a feeder that never asks how the load went is not stopped
                pipe_sizes.append(fcntl.fcntl(fd, F_GETPIPE_SZ))
                if stall:
                    held.append(fd)   # open and never read, as a stuck QEMU
                else:
                    threading.Thread(target=drain, args=(fd,), daemon=True).start()
            if cmd == "query-migrate":
                ret = {"status": "active"} if stall else {"status": "cancelled", "error-desc": WHY}
            elif cmd == "query-commands":
                ret = []
            else:
                ret = {}
            send({"return": ret, "id": m.get("id")})


held = []


def load(stall, size, timeout):
    """`mem load` of a stream of size bytes against the fake: (process or None when it timed out, took, log,
    pipe sizes)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "qmp.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        log, pipe_sizes = [], []
        t = threading.Thread(target=serve, args=(srv, log, pipe_sizes, stall), daemon=True)
        t.start()
        stream = os.path.join(d, "stream")
        with open(stream, "wb") as f:
            f.write(b"QEVM" + bytes(size))
        env = dict(os.environ, VMSNAP_TEST_LOAD_STALL_S="1") if stall else None
        t0 = time.monotonic()
        try:
            p = subprocess.run([VMSNAP, "mem", "load", "--qmp", path, stream], capture_output=True, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None, timeout, log, pipe_sizes
        took = time.monotonic() - t0
        t.join(timeout=10)
        print(p.stderr.strip())
        names = [n for i, (n, _) in enumerate(log) if i == 0 or log[i - 1][0] != n]   # a run of polls as one
        print(names, "pipe sizes:", pipe_sizes, f"took {took:.2f} s")
        return p, took, log, pipe_sizes


failures = []
p, took, log, pipe_sizes = load(False, 4096, 30)
if p is None:
    failures.append("mem load still waiting 30 s after QEMU reported the migration cancelled")
else:
    if p.returncode != 1 or "cancelled" not in p.stderr or WHY not in p.stderr:
        failures.append(f"the cancelled load not reported with QEMU's words (exit {p.returncode})")
    if ("closefd", {"fdname": "vmsnap-incoming"}) not in log:
        failures.append("no closefd for the fd of the cancelled load")
    if len(pipe_sizes) != 1 or pipe_sizes[0] < 1 << 20:
        failures.append(f"QEMU's pipe not enlarged to 1 MiB (sizes {pipe_sizes})")
# More than the pipe holds, so that the feeder waits on a full pipe that QEMU does not read.
p, took, log, _ = load(True, 4 << 20, 40)
if p is None:
    failures.append("mem load still waiting 40 s into a load whose pipe QEMU does not read")
elif p.returncode != 1 or "QEMU stopped reading the memory stream" not in p.stderr:
    failures.append(f"the stalled load not reported (exit {p.returncode})")
elif ("closefd", {"fdname": "vmsnap-incoming"}) not in log:
    failures.append("no closefd for the fd of the stalled load")
for fd in held:
    os.close(fd)
if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("PASS")
