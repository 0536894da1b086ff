"""Fault injection with a fake QMP server (no QEMU): a snapshot job that fails midway leaves the VM stopped, and
vmsnap reports the job's error from query-jobs, dismisses the job and resumes the VM; a QEMU without the snapshot
jobs gets HMP savevm, whose text error is reported; a dump that fails is reported and the VM resumed."""
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


def main():
    with tempfile.TemporaryDirectory(prefix="vmsnap-fakeqmp-") as d:
        jobs = FakeQemu(os.path.join(d, "jobs.sock"), ["snapshot-save", "snapshot-load", "snapshot-delete"])
        p = run("internal", "save", "--qmp", jobs.path, "t1")
        check(p.returncode == 1 and "No space left on device" in p.stderr and "job 'vmsnap-save-" in p.stderr,
              f"job error not reported: {p.stderr!r}")
        check(p.stderr.count("\n") == 1, "error is one line")
        names = [n for n, _ in jobs.log]
        check("job-dismiss" in names, f"job not dismissed: {names}")
        check(jobs.running and names[-1] == "cont", f"VM not resumed after the failed job: {names}")
        save = next(a for n, a in jobs.log if n == "snapshot-save")
        check(save["devices"] == ["disk0"] and save["vmstate"] == "disk0" and save["tag"] == "t1", f"args: {save}")

        hmp = FakeQemu(os.path.join(d, "hmp.sock"), ["human-monitor-command"])
        p = run("internal", "save", "--qmp", hmp.path, "t1")
        check(p.returncode == 1 and "HMP 'savevm t1'" in p.stderr and "Input/output error" in p.stderr,
              f"HMP error not reported: {p.stderr!r}")
        check(hmp.running and [n for n, _ in hmp.log][-1] == "cont", "VM not resumed after failed HMP savevm")
        p = run("internal", "save", "--qmp", hmp.path, "t1", "--devices", "disk0")
        check(p.returncode == 1 and "need QEMU's snapshot-save job" in p.stderr, f"--devices on HMP: {p.stderr!r}")
        p = run("internal", "save", "--qmp", hmp.path, "a b")
        check(p.returncode == 1 and "HMP" in p.stderr, f"tag HMP cannot take: {p.stderr!r}")

        dump = FakeQemu(os.path.join(d, "dump.sock"), [])
        out = os.path.join(d, "out", "mem.elf")
        os.mkdir(os.path.dirname(out))
        p = run("dump", "--qmp", dump.path, "-o", out)
        check(p.returncode == 1 and "dump: write failed" in p.stderr, f"dump failure not reported: {p.stderr!r}")
        check(os.listdir(os.path.dirname(out)) == [], f"failed dump left files: {os.listdir(os.path.dirname(out))}")
        check(dump.running, "VM not resumed after a failed dump")
    print("PASS", file=sys.stderr)


main()
