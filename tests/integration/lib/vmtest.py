"""vmtest: the harness every vmsnap integration test uses (Python 3 stdlib only).

    import vmtest
    def test():
        with vmtest.VM(mem="128M") as vm:           # builds the test guest if needed, starts QEMU
            agent = vm.agent()                      # connects to the serial socket, waits for READY
            agent.cmd("fill 16 seed=5")             # one reply per command; ERR raises TestFailure
            t0 = time.monotonic()
            vm.qmp.cmd("stop"); time.sleep(1); vm.qmp.cmd("cont")
            agent.wait_heartbeats(5)
            vmtest.check(agent.hb_stats(since=t0).max_gap >= 0.8, "pause not seen")
    vmtest.main(test)

QEMU is always killed and the temp dir removed: on leaving the `with` block, at exit, on SIGTERM/SIGHUP, and (through
PR_SET_PDEATHSIG) if the test process dies. Every path handed to QEMU is absolute.

A VM has two QMP sockets: `vm.qmp_path` is left free for vmsnap and tests (QEMU serves one client per socket, so
holding it would lock vmsnap out), and a second one that only the harness's own client (`vm.qmp`) uses.
"""

import atexit
import collections
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.environ.get("VMSNAP_SRCDIR") or os.path.join(HERE, "..", "..", ".."))
# the harness's own cache (guest, QEMU 10, accel probe); VMSNAP_CACHE is vmsnap's block cache switch, not this
CACHE = os.path.abspath(os.environ.get("VMSNAP_TEST_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "vmsnap"))
QEMU = os.environ.get("VMSNAP_QEMU", "qemu-system-x86_64")
_T0 = time.monotonic()
VERBOSE = True  # log() lines on stderr; the demo turns them off


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    pass


def log(msg):
    """A timestamped line on stderr (meson keeps it in the test log)."""
    if not VERBOSE:
        return
    print(f"[{time.monotonic() - _T0:7.2f}s] {msg}", file=sys.stderr, flush=True)


# ---- assertions, skipping, running a test -----------------------------------------------------------------------

def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what="value"):
    if got != want:
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


def check_raises(exc_type, fn, *args, **kw):
    """fn(*args) must raise exc_type; returns the exception."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise TestFailure(f"{getattr(fn, '__name__', fn)} did not raise {exc_type.__name__}")


def skip(reason):
    raise Skip(reason)


def require_qemu():
    if not shutil.which(QEMU):
        skip(f"{QEMU} not found (apt-get install qemu-system-x86)")


_qemu_version = None


def qemu_version():
    """(major, minor, micro) of the QEMU the tests run (VMSNAP_QEMU, else PATH's), from its -version."""
    global _qemu_version
    if _qemu_version is None:
        p = subprocess.run([QEMU, "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = re.search(r"version (\d+)\.(\d+)\.(\d+)", p.stdout)
        if p.returncode != 0 or not m:
            raise TestFailure(f"{QEMU} -version: {p.stdout.strip()!r}")
        _qemu_version = tuple(int(x) for x in m.groups())
    return _qemu_version


def qemu_name():
    """'QEMU 10.0.2' (the one under test), for logs and skip reasons."""
    return "QEMU " + ".".join(map(str, qemu_version()))


def skip_on_qemu(since, reason):
    """Skip on the QEMU under test if it is version `since` (a tuple, e.g. (8,)) or newer: a feature or fix that
    this QEMU lacks or needs. The reason names the QEMU."""
    if qemu_version() >= tuple(since):
        skip(f"on {qemu_name()}: {reason}")


def require_tool(name):
    if not shutil.which(name):
        skip(f"{name} not found")


def main(fn, *args):
    """Run a test function: exit 0 on success, 77 on skip, 1 on failure (with the reason on stderr)."""
    try:
        require_qemu()
        log(f"under {qemu_name()} ({shutil.which(QEMU) or QEMU})")
        fn(*args)
    except Skip as e:
        print(f"SKIP: {e}", file=sys.stderr)
        rc = SKIP
    except TestFailure as e:
        traceback.print_exc()
        print(f"FAIL: {e}", file=sys.stderr)
        rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    else:
        log("PASS")
        rc = 0
    cleanup_all()
    sys.exit(rc)


# ---- the guest and the accelerator ------------------------------------------------------------------------------

class Guest:
    def __init__(self, d):
        self.kernel, self.initrd, self.append = d["kernel"], d["initrd"], d["append"]
        self.kernel_package = d.get("kernel_package")

    def __repr__(self):
        return f"Guest(kernel={self.kernel!r}, initrd={self.initrd!r})"


_guest = None


def guest():
    """Build the test guest if needed (tests/guest/build.sh, cached) and return its paths."""
    global _guest
    if _guest is None:
        script = os.path.join(SRCDIR, "tests", "guest", "build.sh")
        p = subprocess.run([script, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise TestFailure(f"building the test guest failed ({script}):\n{p.stderr.strip()}")
        _guest = Guest(json.loads(p.stdout))
    return _guest


def accel():
    """'kvm' only if a cached probe showed the guest boots under KVM here, else 'tcg'. VMSNAP_ACCEL overrides."""
    forced = os.environ.get("VMSNAP_ACCEL")
    if forced:
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    qemu = shutil.which(QEMU) or QEMU
    try:
        st = os.stat(qemu)
    except OSError:
        return "tcg"
    key = f"{qemu}:{st.st_mtime_ns}:{os.uname().release}"
    path = os.path.join(CACHE, "accel-probe.json")
    os.makedirs(CACHE, exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel tests: one probe
        try:
            with open(path) as f:
                d = json.load(f)
            if d.get("key") == key:
                return d["accel"]
        except (OSError, ValueError, KeyError):
            pass
        result = "kvm" if _probe_kvm() else "tcg"
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"key": key, "accel": result}, f)
        os.replace(tmp, path)
        return result


def _probe_kvm(timeout=10):
    """Boot the test guest under KVM; it works only if the agent says READY (here KVM exists but cannot run guests)."""
    g = guest()
    cmd = [QEMU, "-accel", "kvm", "-m", "128", "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot",
           "-kernel", g.kernel, "-initrd", g.initrd, "-append", g.append, "-serial", "stdio"]
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
    except OSError:
        return False
    ok = False
    deadline = time.monotonic() + timeout
    try:
        buf = b""
        os.set_blocking(p.stdout.fileno(), False)
        while time.monotonic() < deadline and p.poll() is None:
            chunk = p.stdout.read() or b""
            buf += chunk
            if b"READY " in buf:
                ok = True
                break
            time.sleep(0.05)
    finally:
        p.kill()
        p.wait()
    return ok


# ---- process hygiene --------------------------------------------------------------------------------------------

_live = set()
_live_lock = threading.Lock()
_libc = None


def _die_with_parent():
    """preexec_fn: QEMU gets SIGKILL if the test process dies (PR_SET_PDEATHSIG; tied to the starting thread)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def cleanup_all():
    with _live_lock:
        vms = list(_live)
    for vm in vms:
        vm.close()


def _on_signal(signum, frame):
    cleanup_all()
    os._exit(128 + signum)


atexit.register(cleanup_all)
if threading.current_thread() is threading.main_thread():
    for _s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(_s, _on_signal)


def _wait_for(pred, timeout, what, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise TestFailure(f"QEMU exited with status {proc.returncode} while waiting for {what}"
                              + _tail(log_path))
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout:.0f}s waiting for {what}" + _tail(log_path))
        time.sleep(0.01)


def _tail(path, n=20):
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()[-n:]
    except OSError:
        return ""
    return ("\n--- " + path + " ---\n" + "\n".join(lines)) if lines else ""


# ---- QMP (an independent client: tests check vmsnap against it) ---------------------------------------------------

class QMPError(Exception):
    def __init__(self, cmd, cls, desc):
        super().__init__(f"QMP {cmd}: {cls}: {desc}")
        self.cls, self.desc = cls, desc


class QMP:
    """A minimal synchronous QMP client: cmd() returns 'return', raises QMPError on 'error'; events are kept."""
    MAX_LINE = 64 << 20

    def __init__(self, path, timeout=30):
        self.path, self.events, self._id = path, [], 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise TestFailure(f"cannot connect to QMP socket {path}")
                time.sleep(0.05)
        self._rf = self.sock.makefile("rb")
        greeting = self._read()
        check("QMP" in greeting, f"{path}: no QMP greeting: {greeting!r}")
        self.greeting = greeting["QMP"]
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self._rf.readline(self.MAX_LINE)
        if not line:
            raise TestFailure(f"QMP socket {self.path} closed by QEMU")
        return json.loads(line)

    def send_raw(self, data):
        """Send bytes as they are (to test a server's reaction to bad input)."""
        self.sock.sendall(data)

    def cmd(self, name, args=None, timeout=120, **kw):
        self._id += 1
        msg = {"execute": name, "id": self._id}
        a = dict(args or {}, **kw)
        if a:
            msg["arguments"] = a
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
            elif r.get("id") == self._id:
                if "error" in r:
                    raise QMPError(name, r["error"].get("class"), r["error"].get("desc"))
                return r.get("return")

    def wait_event(self, name, timeout=60):
        """Return (and remove) the first event called name, reading more if needed."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"QMP event {name} not seen within {timeout}s")
            self.sock.settimeout(left)
            try:
                r = self._read()
            except socket.timeout:
                continue
            if "event" in r:
                self.events.append(r)

    def status(self):
        return self.cmd("query-status")["status"]

    def close(self):
        for c in (self._rf, self.sock):
            try:
                c.close()
            except OSError:
                pass


# ---- the agent on the guest's serial line -------------------------------------------------------------------------

class Reply:
    """One 'R <id> OK|ERR ...' line. fields: its key=value words."""

    def __init__(self, rid, ok, text):
        self.id, self.ok, self.text = rid, ok, text
        self.fields = dict(w.split("=", 1) for w in text.split() if "=" in w)

    def __getitem__(self, k):
        return self.fields[k]

    def int(self, k):
        return int(self.fields[k], 0)

    def __repr__(self):
        return f"R {self.id} {'OK' if self.ok else 'ERR'} {self.text}"


class HbStats:
    """Heartbeats seen between two host times. max_gap is host seconds between consecutive arrivals (within one
    connection); guest_gap_at_max is the guest's own clock across that gap; max_counter_step the largest counter jump."""

    def __init__(self, beats):
        self.count = len(beats)
        self.max_gap = self.guest_gap_at_max = 0.0
        self.max_gap_at = None
        self.max_counter_step = self.counter_step_at_max = 0
        self.first = beats[0] if beats else None
        self.last = beats[-1] if beats else None
        for a, b in zip(beats, beats[1:]):
            if a[3] != b[3]:
                continue  # a reconnect in between: that gap says nothing about the guest
            gap = b[0] - a[0]
            if gap > self.max_gap:
                self.max_gap, self.max_gap_at = gap, a[0]
                self.guest_gap_at_max = (b[2] - a[2]) / 1e6
                self.counter_step_at_max = b[1] - a[1]
            self.max_counter_step = max(self.max_counter_step, b[1] - a[1])
        span = (self.last[0] - self.first[0]) if self.count > 1 else 0.0
        self.duration = span
        self.rate = (self.count - 1) / span if span > 0 else 0.0

    def __repr__(self):
        return (f"HbStats(count={self.count}, rate={self.rate:.1f}/s, max_gap={self.max_gap * 1000:.1f} ms, "
                f"guest_gap_at_max={self.guest_gap_at_max * 1000:.1f} ms, max_counter_step={self.max_counter_step})")


_LINE_H = re.compile(rb"^H (\d+) (\d+)$")
_LINE_R = re.compile(rb"^R (\d+) (OK|ERR) ?(.*)$")
_LINE_READY = re.compile(rb"^READY (\S+)$")


class Agent:
    """Client of the test agent on a serial socket (a QEMU chardev server). Reconnects are fine: lines sent while
    nobody listens are lost, and heartbeats are kept per connection ('epoch') so gaps never span a reconnect."""

    def __init__(self, path, proc=None, log_path=None):
        self.path, self._proc, self._log_path = path, proc, log_path
        self._cv = threading.Condition()
        self._replies = {}
        self._beats = collections.deque(maxlen=1_000_000)  # (host_t, counter, guest_us, epoch)
        self.errors = collections.deque(maxlen=1000)       # 'E ...' lines
        self.noise = collections.deque(maxlen=1000)        # anything else (kernel messages, partial lines)
        self.ready = []                                     # (host_t, boot_id) for each READY seen
        self.boot_id = None
        self._epoch = 0
        self._next_id = 0
        self._sock = self._thread = None

    # connection
    def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if self._proc is not None and self._proc.poll() is not None:
                    raise TestFailure(f"QEMU exited ({self._proc.returncode}) before its serial socket accepted"
                                      + _tail(self._log_path))
                if time.monotonic() > deadline:
                    raise TestFailure(f"cannot connect to serial socket {self.path}")
                time.sleep(0.01)
        with self._cv:
            self._epoch += 1
            self._sock = s
        self._thread = threading.Thread(target=self._reader, args=(s, self._epoch), daemon=True)
        self._thread.start()
        return self

    def disconnect(self):
        s, self._sock = self._sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    close = disconnect

    def reconnect(self, timeout=30):
        self.disconnect()
        return self.connect(timeout)

    @property
    def connected(self):
        return self._sock is not None and self._thread is not None and self._thread.is_alive()

    def _reader(self, s, epoch):
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if len(buf) > 65536:
                buf = b""
            with self._cv:
                for line in lines:
                    self._line(line.rstrip(b"\r"), now, epoch)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def _line(self, line, now, epoch):
        m = _LINE_H.match(line)
        if m:
            self._beats.append((now, int(m.group(1)), int(m.group(2)), epoch))
            return
        m = _LINE_R.match(line)
        if m:
            rid = int(m.group(1))
            self._replies[rid] = Reply(rid, m.group(2) == b"OK", m.group(3).decode(errors="replace"))
            return
        m = _LINE_READY.match(line)
        if m:
            self.boot_id = m.group(1).decode(errors="replace")
            self.ready.append((now, self.boot_id))
            return
        text = line.decode(errors="replace")
        (self.errors if text.startswith("E ") else self.noise).append(text)

    # commands
    def send_raw(self, data):
        check(self._sock is not None, "agent not connected")
        self._sock.sendall(data)

    def cmd(self, line, timeout=120, check=True):
        """Send one command, wait for its reply. check=True raises TestFailure on ERR."""
        with self._cv:
            self._next_id += 1
            rid = self._next_id
            readies = len(self.ready)
        self.send_raw(f"{rid} {line}\n".encode())
        deadline = time.monotonic() + timeout
        with self._cv:
            while rid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"agent: no reply to {line!r} within {timeout}s")
                if not (self._thread and self._thread.is_alive()):
                    raise TestFailure(f"agent: serial connection closed while waiting for {line!r}"
                                      + _tail(self._log_path))
                if len(self.ready) > readies:
                    raise TestFailure(f"agent restarted (READY) while running {line!r}; guest said: "
                                      + " | ".join(list(self.noise)[-5:]))
                self._cv.wait(min(left, 0.5))
            r = self._replies.pop(rid)
        if check and not r.ok:
            raise TestFailure(f"agent: {line!r} failed: {r.text}")
        return r

    def wait_ready(self, timeout=120):
        """Wait for READY (a fresh boot) or, if the agent was already running, for a heartbeat; return the boot id."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.boot_id is None and not self._beats:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"agent on {self.path}: no READY within {timeout}s" + _tail(self._log_path))
                if not (self._thread and self._thread.is_alive()):
                    raise TestFailure(f"agent on {self.path}: serial closed before READY" + _tail(self._log_path))
                self._cv.wait(min(left, 0.5))
        if self.boot_id is None:
            self.boot_id = self.cmd("status", timeout=max(1, deadline - time.monotonic()))["boot"]
        return self.boot_id

    def status(self):
        return self.cmd("status")

    # heartbeats
    def heartbeats(self, since=None, until=None):
        with self._cv:
            return [b for b in self._beats if (since is None or b[0] >= since) and (until is None or b[0] <= until)]

    def hb_stats(self, since=None, until=None):
        """Statistics of the heartbeats in [since, until], counting the gap from the last beat before `since`
        (a pause that starts right after `since` is then measured whole)."""
        with self._cv:
            beats = list(self._beats)
        sel = [i for i, b in enumerate(beats) if (since is None or b[0] >= since) and (until is None or b[0] <= until)]
        if sel and sel[0] > 0 and since is not None:
            sel.insert(0, sel[0] - 1)
        return HbStats([beats[i] for i in sel])

    def last_heartbeat(self):
        with self._cv:
            return self._beats[-1] if self._beats else None

    def wait_heartbeats(self, n=1, timeout=60):
        """Wait until n heartbeats newer than now have arrived; return the last one."""
        t = time.monotonic()
        deadline = t + timeout
        with self._cv:
            while sum(1 for _ in self._iter_since(t)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"agent: fewer than {n} heartbeats within {timeout}s")
                if not (self._thread and self._thread.is_alive()):
                    raise TestFailure("agent: serial connection closed while waiting for heartbeats")
                self._cv.wait(min(left, 0.5))
            return self._beats[-1]

    def _iter_since(self, t):
        for b in reversed(self._beats):
            if b[0] < t:
                return
            yield b


# ---- the VM --------------------------------------------------------------------------------------------------------

def make_disk(path, size, fmt="raw"):
    """Create an empty disk image (raw: sparse file; qcow2: qemu-img create). Returns its absolute path."""
    path = os.path.abspath(path)
    if fmt == "raw":
        with open(path, "wb") as f:
            f.truncate(_size(size))
    else:
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, path, str(_size(size))], check=True)
    return path


def _size(s):
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", str(s).strip(), re.I)
    if not m:
        raise ValueError(f"bad size {s!r}")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


_DIR_PREFIX = "vmsnap-test-"


def _sweep_stale_dirs():
    """Remove temp dirs left by a harness that was SIGKILLed (its QEMU died with it, through PDEATHSIG)."""
    tmp = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(_DIR_PREFIX)]
    except OSError:
        return
    for n in names:
        d = os.path.join(tmp, n)
        try:
            with open(os.path.join(d, ".owner")) as f:
                pid = int(f.read())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            pass


def _drive_opt(v):
    return str(v).replace(",", ",,")  # QEMU option syntax: a comma inside a value is doubled


class VM:
    """A test guest under QEMU, in its own temp dir.

    disks: paths (format from the extension: .qcow2 -> qcow2, else raw), or dicts {"file": PATH, "format": F} /
    {"url": "nbd+unix:///?socket=..."}; each becomes a virtio-blk drive (/dev/vda, vdb, ... in order).
    extra: more QEMU arguments. start=False lets a test read vm.command() first."""

    def __init__(self, mem="256M", disks=(), extra=(), append="", smp=1, accel_=None, no_reboot=False, start=True,
                 name="vm"):
        self.mem, self.disks, self.extra, self.smp = str(mem), list(disks), list(extra), smp
        self.name, self.no_reboot, self.extra_append = name, no_reboot, append
        self.accel = accel_ or accel()
        self.guest = guest()
        _sweep_stale_dirs()
        self.dir = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{name}-")
        with open(os.path.join(self.dir, ".owner"), "w") as f:
            f.write(str(os.getpid()))
        self.serial_path = os.path.join(self.dir, "serial.sock")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")            # free for vmsnap / tests
        self._qmp_own_path = os.path.join(self.dir, "qmp-harness.sock")  # the harness's own client only
        self.log_path = os.path.join(self.dir, "qemu.log")
        self.proc = None
        self._qmp = self._agent = None
        self._closed = False
        with _live_lock:
            _live.add(self)
        if start:
            self.start()

    def command(self):
        g = self.guest
        append = g.append + (" " + self.extra_append if self.extra_append else "")
        cmd = [QEMU, "-accel", self.accel, "-m", self.mem, "-smp", str(self.smp),
               "-display", "none", "-nodefaults", "-no-user-config",
               "-kernel", g.kernel, "-initrd", g.initrd, "-append", append,
               "-chardev", f"socket,id=ser0,path={self.serial_path},server=on,wait=off", "-serial", "chardev:ser0",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
               "-qmp", f"unix:{self._qmp_own_path},server=on,wait=off"]
        if self.no_reboot:
            cmd.append("-no-reboot")
        for d in self.disks:
            if isinstance(d, str):
                d = {"file": d}
            if "url" in d:
                spec = f"file={_drive_opt(d['url'])},format={d.get('format', 'raw')}"
            else:
                f = os.path.abspath(d["file"])
                fmt = d.get("format") or ("qcow2" if f.endswith(".qcow2") else "raw")
                spec = f"file={_drive_opt(f)},format={fmt}"
            cmd += ["-drive", f"{spec},if=virtio" + ("".join("," + o for o in d.get("opts", ())))]
        return cmd + self.extra

    def start(self, timeout=60):
        check(self.proc is None, "VM already started")
        cmd = self.command()
        log(f"{self.name}: {' '.join(cmd)}")
        with open(self.log_path, "wb") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                         cwd=self.dir, preexec_fn=_die_with_parent)
        _wait_for(lambda: os.path.exists(self.serial_path) and os.path.exists(self._qmp_own_path), timeout,
                  "QEMU's sockets", self.proc, self.log_path)
        # Connect to the serial line at once, so READY is not lost.
        self._agent = Agent(self.serial_path, self.proc, self.log_path).connect(timeout)
        return self

    def agent(self, timeout=120):
        """The connected agent, once it said READY."""
        check(self._agent is not None, "VM not started")
        t = time.monotonic()
        self._agent.wait_ready(timeout)
        if not getattr(self, "boot_time", None):
            self.boot_time = time.monotonic() - t
        return self._agent

    @property
    def qmp(self):
        if self._qmp is None:
            self._qmp = QMP(self._qmp_own_path)
        return self._qmp

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.name}: QEMU still running after {timeout}s")

    def shutdown(self, timeout=60):
        """Clean shutdown: the agent syncs and powers off; QEMU exits by itself."""
        try:
            self._agent.cmd("poweroff", timeout=30)
        except TestFailure:
            pass  # the reply can be lost when the guest powers off fast
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for c in (self._agent, self._qmp):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None and not isinstance(ev, Skip):
            tail = _tail(self.log_path)
            if tail:
                print(tail, file=sys.stderr)
        self.close()
        return False


# ---- the vmsnap CLI ---------------------------------------------------------------------------------------------

def vmsnap_path():
    p = os.environ.get("VMSNAP") or os.path.join(SRCDIR, "build", "vmsnap")
    if not os.access(p, os.X_OK):
        skip(f"vmsnap binary not found at {p} (set VMSNAP or build first)")
    return p


def vmsnap(*args, check=True, json_out=False, timeout=300, input=None, env_over=None):
    """Run `vmsnap ARGS`; returns CompletedProcess (text), or the parsed JSON stdout with json_out=True.
    check=True raises TestFailure on a non-zero exit, with stderr in the message. env_over: variables to set."""
    cmd = [vmsnap_path()] + [str(a) for a in args]
    env = dict(os.environ, **env_over) if env_over else None
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, input=input,
                       env=env)
    log(f"$ {' '.join(cmd)} -> {p.returncode}")
    if check and p.returncode != 0:
        raise TestFailure(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    if json_out:
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise TestFailure(f"{' '.join(cmd)}: stdout is not one JSON document: {p.stdout[:200]!r}")
    return p
