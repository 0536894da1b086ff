#!/usr/bin/env python3
"""`mem load` is boot's feeder: when QEMU reports the incoming migration "cancelled" (not "failed"), the load ends at
once with that status and QEMU's words, and the fd is dropped with closefd; the pipe QEMU reads was enlarged to
1 MiB. A fake QMP server (no QEMU: QEMU has no way to cancel an incoming migration on demand) takes the pipe's read
end with getfd, reports the migration cancelled and records what it is sent."""
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


def serve(srv, log, pipe_sizes):
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
                threading.Thread(target=drain, args=(fd,), daemon=True).start()
            if cmd == "query-migrate":
                ret = {"status": "cancelled", "error-desc": WHY}
            elif cmd == "query-commands":
                ret = []
            else:
                ret = {}
            send({"return": ret, "id": m.get("id")})


with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "qmp.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    log, pipe_sizes = [], []
    t = threading.Thread(target=serve, args=(srv, log, pipe_sizes), daemon=True)
    t.start()
    stream = os.path.join(d, "stream")
    with open(stream, "wb") as f:
        f.write(b"QEVM" + bytes(4096))
    t0 = time.monotonic()
    try:
        p = subprocess.run([VMSNAP, "mem", "load", "--qmp", path, stream], capture_output=True, text=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        print("FAILED: mem load still waiting 30 s after QEMU reported the migration cancelled")
        sys.exit(1)
    took = time.monotonic() - t0
    t.join(timeout=10)
    print(p.stderr.strip())
    print([n for n, _ in log], "pipe sizes:", pipe_sizes, f"took {took:.2f} s")
    failures = []
    if p.returncode != 1 or "cancelled" not in p.stderr or WHY not in p.stderr:
        failures.append(f"the cancelled load not reported with QEMU's words (exit {p.returncode})")
    if ("closefd", {"fdname": "vmsnap-incoming"}) not in log:
        failures.append("no closefd for the fd of the cancelled load")
    if len(pipe_sizes) != 1 or pipe_sizes[0] < 1 << 20:
        failures.append(f"QEMU's pipe not enlarged to 1 MiB (sizes {pipe_sizes})")
    if failures:
        print("FAILED: " + ", ".join(failures))
        sys.exit(1)
print("PASS")
