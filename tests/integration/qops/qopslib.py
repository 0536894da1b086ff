"""Helpers shared by the qops integration tests: run vmsnap, and drive a migration to a pipe that is read and
discarded (fd passed with getfd over the harness's own QMP socket; no shell)."""
import array
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ.get("VMSNAP_SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..", "..")),
                                "tests", "integration", "lib"))
try:
    import vmtest  # noqa: E402
    from vmtest import check, log  # noqa: E402,F401
except ImportError as e:   # the harness lands with the test guest (tests/integration/lib/vmtest.py)
    print(f"SKIP: test harness vmtest not available: {e}", file=sys.stderr)
    sys.exit(77)

VMSNAP = os.environ.get("VMSNAP") or os.path.join(os.environ.get("VMSNAP_BUILDDIR", "build"), "vmsnap")


class Result:
    def __init__(self, p, args):
        self.rc, self.out, self.err, self.args = p.returncode, p.stdout, p.stderr, args

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            raise vmtest.TestFailure(f"vmsnap {' '.join(self.args)}: stdout is not one JSON document: {self.out!r}")


def vmsnap(*args, rc=0, timeout=120):
    """Run vmsnap; check its exit status (None: any). stderr must be one 'vmsnap: ' line when it fails."""
    args = [str(a) for a in args]
    t = time.monotonic()
    p = subprocess.run([VMSNAP] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    log(f"vmsnap {' '.join(args)} -> {p.returncode} in {time.monotonic() - t:.2f}s {p.stderr.strip()}")
    r = Result(p, args)
    if rc is not None:
        check(p.returncode == rc, f"vmsnap {' '.join(args)}: exit {p.returncode}, want {rc}; stderr: {p.stderr!r}")
    if p.returncode == 1:
        lines = p.stderr.strip().splitlines()
        check(len(lines) == 1 and lines[0].startswith("vmsnap: "), f"error is not one 'vmsnap: ' line: {p.stderr!r}")
    return r


def getfd(qmp, name, fd):
    """QMP getfd with fd passed by SCM_RIGHTS on the harness client's socket."""
    qmp._id += 1
    msg = json.dumps({"execute": "getfd", "arguments": {"fdname": name}, "id": qmp._id}).encode() + b"\n"
    qmp.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    while True:
        r = qmp._read()
        if "event" in r:
            qmp.events.append(r)
        elif r.get("id") == qmp._id:
            check("error" not in r, f"getfd: {r}")
            return


class Sink:
    """A pipe whose read end a thread drains and counts; the write end goes to QEMU."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.bytes = 0
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        while True:
            b = os.read(self.r, 1 << 20)
            if not b:
                break
            self.bytes += len(b)

    def close(self):
        if self.w >= 0:
            os.close(self.w)
            self.w = -1
        self.t.join(30)
        os.close(self.r)


def start_migration(qmp, sink, name="discard"):
    getfd(qmp, name, sink.w)
    os.close(sink.w)   # QEMU holds its own copy
    sink.w = -1
    qmp.cmd("migrate", uri=f"fd:{name}")


def wait_migration(qmp, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = qmp.cmd("query-migrate")
        if m.get("status") in ("completed", "failed", "cancelled"):
            return m
        time.sleep(0.02)
    raise vmtest.TestFailure(f"migration did not end within {timeout}s")
