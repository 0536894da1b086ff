#!/usr/bin/env python3
"""`mem load` when QEMU refuses migrate-incoming: the pipe's read end was passed with getfd and stayed in QEMU's fd
table (no closefd), holding the pipe open for as long as QEMU ran. A fake QMP server (no QEMU) refuses the command
and records what it is sent: vmsnap must report QEMU's words and send closefd for the fd."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

VMSNAP = os.environ.get("VMSNAP") or os.path.join(os.environ.get("VMSNAP_BUILDDIR", "build"), "vmsnap")
REFUSAL = "fake: migrate-incoming refused"


def serve(srv, log):
    c, _ = srv.accept()
    with c:
        send = lambda m: c.sendall(json.dumps(m).encode() + b"\r\n")  # noqa: E731
        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                      "capabilities": []}})
        for line in c.makefile("rb"):
            m = json.loads(line)
            log.append((m.get("execute"), m.get("arguments", {})))
            if m.get("execute") == "migrate-incoming":
                reply = {"error": {"class": "GenericError", "desc": REFUSAL}}
            else:
                reply = {"return": [] if m.get("execute") == "query-commands" else {}}
            reply["id"] = m.get("id")
            send(reply)


with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "qmp.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    log = []
    t = threading.Thread(target=serve, args=(srv, log), daemon=True)
    t.start()
    stream = os.path.join(d, "stream")
    with open(stream, "wb") as f:
        f.write(b"QEVM" + bytes(4096))
    p = subprocess.run([VMSNAP, "mem", "load", "--qmp", path, stream], capture_output=True, text=True, timeout=60)
    t.join(timeout=10)
    print(p.stderr.strip())
    print([n for n, _ in log])
    failures = []
    if p.returncode != 1 or REFUSAL not in p.stderr:
        failures.append(f"QEMU's refusal not reported (exit {p.returncode})")
    if ("closefd", {"fdname": "vmsnap-incoming"}) not in log:
        failures.append("no closefd for the refused fd")
    if failures:
        print("FAILED: " + ", ".join(failures))
        sys.exit(1)
print("PASS")
