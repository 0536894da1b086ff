"""A QMP server that is not QEMU (fault injection): greets as QEMU 7.2, answers query-status "running" and every
other command with an empty return. Usage: fake_qmp.py SOCKET (serves until killed)."""
import json
import os
import socket
import sys


def session(c):
    send = lambda m: c.sendall(json.dumps(m).encode() + b"\r\n")  # noqa: E731
    send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                  "capabilities": []}})
    for line in c.makefile("rb"):
        m = json.loads(line)
        ret = {"status": "running", "running": True} if m.get("execute") == "query-status" else {}
        reply = {"return": [] if m.get("execute") == "query-commands" else ret}
        if "id" in m:
            reply["id"] = m["id"]
        send(reply)


def main(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(4)
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        with c:
            try:
                session(c)
            except (OSError, ValueError):
                pass


main(sys.argv[1])
