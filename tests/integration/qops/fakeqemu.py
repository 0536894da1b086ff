"""A fake QMP server for fault injection (no QEMU): greets as QEMU 7.2, offers the commands it is given, and
fails the snapshot jobs, HMP savevm and dump-guest-memory midway the way QEMU does, stopping the VM. Plus running
vmsnap against it and the checks the fake-QEMU tests share."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

VMSNAP = os.environ.get("VMSNAP") or os.path.join(os.environ.get("VMSNAP_BUILDDIR", "build"), "vmsnap")

BLOCK = [{"device": "virtio0", "qdev": "/q/vd0",
          "inserted": {"node-name": "disk0", "drv": "qcow2", "ro": False, "image": {}}}]


class FakeQemu:
    def __init__(self, path, commands):
        self.path, self.commands = path, commands
        self.running, self.log, self.jobs = True, [], []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                try:
                    self._session(c)
                except OSError:
                    pass   # the client went away while events were still being sent

    def _session(self, c):
        f = c.makefile("rb")
        send = lambda m: c.sendall(json.dumps(m).encode() + b"\r\n")  # noqa: E731
        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                      "capabilities": []}})
        for line in f:
            m = json.loads(line)
            name, args, mid = m["execute"], m.get("arguments", {}), m.get("id")
            self.log.append((name, args))
            ret, events = self.handle(name, args)
            reply = {"error": {"class": "GenericError", "desc": ret[1]}} if isinstance(ret, tuple) else {"return": ret}
            if mid is not None:
                reply["id"] = mid
            send(reply)
            for e in events:
                send(dict(e, timestamp={"seconds": 0, "microseconds": 0}))

    def handle(self, name, a):
        if name == "qmp_capabilities":
            return {}, []
        if name == "query-commands":
            return [{"name": n} for n in self.commands], []
        if name == "query-block":
            return BLOCK, []
        if name == "query-status":
            return {"status": "running" if self.running else "paused", "running": self.running}, []
        if name == "cont":
            self.running = True
            return {}, [{"event": "RESUME"}]
        if name in ("snapshot-save", "snapshot-load"):
            # Fails midway: the VM was stopped and is left stopped, like QEMU after a failed load.
            self.running = False
            self.jobs = [{"id": a["job-id"], "status": "concluded", "type": name, "current-progress": 1,
                          "total-progress": 1, "error": "Error while writing VM state: No space left on device"}]
            return {}, [{"event": "STOP"},
                        {"event": "JOB_STATUS_CHANGE", "data": {"id": a["job-id"], "status": "running"}},
                        {"event": "JOB_STATUS_CHANGE", "data": {"id": a["job-id"], "status": "aborting"}},
                        {"event": "JOB_STATUS_CHANGE", "data": {"id": a["job-id"], "status": "concluded"}}]
        if name == "query-jobs":
            return self.jobs, []
        if name == "job-dismiss":
            self.jobs = [j for j in self.jobs if j["id"] != a["id"]]
            return {}, []
        if name == "human-monitor-command":
            self.running = False
            return "Error: Error while writing VM state: Input/output error\r\n", []
        if name == "query-dump-guest-memory-capability":
            return {"formats": ["elf"]}, []
        if name == "getfd":
            return {}, []
        if name == "dump-guest-memory":
            self.running = False
            return {}, [{"event": "STOP"}, {"event": "DUMP_COMPLETED", "data": {
                "result": {"status": "failed", "total": 100, "completed": 10}, "error": "dump: write failed"}}]
        return ("error", f"fake: command {name} not handled"), []


def run(*args):
    p = subprocess.run([VMSNAP] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    print(f"vmsnap {' '.join(args)} -> {p.returncode}: {p.stderr.strip()}", file=sys.stderr)
    return p


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


def main(fn):
    """fn(d) in a fresh temp directory; PASS when it returns (check exits 1 on a failed check)."""
    with tempfile.TemporaryDirectory(prefix="vmsnap-fakeqmp-") as d:
        fn(d)
    print("PASS", file=sys.stderr)
