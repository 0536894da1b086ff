#!/usr/bin/env python3
"""bench/ws/run never reports a wrong answer: its guest "function" (the agent's `verify from= mib=`) is answered here
by a fake agent on a real Unix socket, read by the real harness client (vmtest.Agent), and every answer that is not
a verified check of exactly the asked range and seed must stop the bench (TestFailure, so exit status 1); the right
answer must give the guest's time. No QEMU: the fake stands in for the guest to inject the faults."""
import importlib.machinery
import importlib.util
import os
import socket
import sys
import tempfile
import threading

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
loader = importlib.machinery.SourceFileLoader("wsbench", os.path.join(SRC, "bench", "ws", "run"))
spec = importlib.util.spec_from_loader("wsbench", loader)
ws = importlib.util.module_from_spec(spec)
loader.exec_module(ws)
vmtest = ws.vmtest

AT, MIB = 128, 51
RIGHT = f"OK mib={MIB} seed={ws.SEED} ms=12 us=12345 from={AT}"
WRONG = {
    "the pattern did not verify": f"ERR mismatch offset={(AT + 3) << 20} seed={ws.SEED} got=0x0 want=0x1",
    "an agent that checked the whole fill": f"OK mib=288 seed={ws.SEED} ms=90",
    "another range": f"OK mib={MIB} seed={ws.SEED} ms=1 us=1000 from=0",
    "a shorter range": f"OK mib={MIB - 1} seed={ws.SEED} ms=1 us=1000 from={AT}",
    "another seed": f"OK mib={MIB} seed={ws.SEED + 1} ms=1 us=1000 from={AT}",
    "no time": f"OK mib={MIB} seed={ws.SEED} from={AT}",
    "a garbled time": f"OK mib={MIB} seed={ws.SEED} ms=1 us=fast from={AT}",
}


def fake_agent(path, answers):
    """Serve one connection: answer each request with the next scripted answer, under the request's id."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)

    def serve():
        c, _ = ls.accept()
        buf = b""
        for ans in answers:
            while b"\n" not in buf:
                buf += c.recv(4096)
            line, buf = buf.split(b"\n", 1)
            rid, cmd = line.decode().split(" ", 1)
            assert cmd == f"verify seed={ws.SEED} from={AT} mib={MIB}", cmd
            c.sendall(f"H 1 1\nR {rid} {ans}\n".encode())
        c.recv(1)
        c.close()
        ls.close()
    threading.Thread(target=serve, daemon=True).start()


def main():
    d = tempfile.mkdtemp(prefix="vmsnap-ws-answer-")
    path = os.path.join(d, "con")
    fake_agent(path, [RIGHT] + list(WRONG.values()))
    agent = vmtest.Agent(path).connect()
    bad = []
    try:
        guest_ms, host_ms = ws.function(agent, AT, MIB, timeout=10)
        if guest_ms != 12.345 or host_ms < 0:
            bad.append(f"the right answer gave guest {guest_ms} ms, host {host_ms} ms (want 12.345 and >= 0)")
        for what in WRONG:
            try:
                got = ws.function(agent, AT, MIB, timeout=10)
                bad.append(f"{what}: reported as {got}")
            except vmtest.TestFailure as e:
                print(f"ok, refused {what}: {e}")
    finally:
        agent.close()
        os.unlink(path)
        os.rmdir(d)
    print("\n".join(bad) if bad else "every wrong answer stops the bench")
    return 1 if bad else 0


sys.exit(main())
