"""lvtest: a real libvirt daemon for the tests, started and stopped by pid, without systemd.

    with lvtest.Libvirtd() as lv:                 # virtlogd + libvirtd, as root; skips if libvirt is not installed
        dom = lv.domain("name", mem_mib=256)       # defined + started TCG domain running the test guest
        agent = dom.agent()                        # its ttyS0 is a Unix socket; the test agent answers there
        lv.virsh("domstate", dom.name)

libvirtd gets a private configuration (its sockets and pid file in a temp dir, no TCP, no polkit): clients use
lv.uri. The QEMU driver itself has no private mode: it uses the system's runtime directories (/run/libvirt/qemu,
/var/lib/libvirt/qemu, ...), created here if missing, and virtlogd listens where the QEMU driver looks for it
(/run/libvirt). Runs are serialized on a lock file. stop() (also at exit and on failure) destroys and undefines every
domain it started, stops libvirtd and then virtlogd by pid, and restores /dev/kvm as it found it.
"""
import atexit
import fcntl
import grp
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402
from vmtest import TestFailure, log, skip  # noqa: E402

SYSTEM_DIRS = ["/run/libvirt", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu", "/var/log/libvirt/qemu"]
LOCK = "/run/lock/vmsnap-libvirt-test.lock"
# The QEMU libvirt runs for the domain: the system's (Debian's 7.2), whatever VMSNAP_QEMU says for other tests.
EMULATOR = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


def _kill_pid(pid, what, timeout=15):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    log(f"{what} (pid {pid}) ignored SIGTERM for {timeout} s: SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class Domain:
    def __init__(self, lv, name, console):
        self.lv, self.name, self.console = lv, name, console
        self._agent = None

    def agent(self, timeout=120):
        if self._agent is None:
            self._agent = vmtest.Agent(self.console).connect(timeout)
            self._agent.wait_ready(timeout)
        return self._agent

    def qmp(self, cmd, args=None):
        """A QMP command through libvirt (virsh qemu-monitor-command), its "return" value."""
        import json
        msg = {"execute": cmd, **({"arguments": args} if args else {})}
        out = self.lv.virsh("qemu-monitor-command", self.name, json.dumps(msg))
        reply = json.loads(out)
        if "error" in reply:
            raise TestFailure(f"QMP {cmd} via virsh: {reply['error']}")
        return reply["return"]

    def state(self):
        return self.lv.virsh("domstate", "--reason", self.name).strip()

    def qemu_pid(self):
        with open(f"/run/libvirt/qemu/{self.name}.pid") as f:
            return int(f.read().strip())


class Libvirtd:
    def __init__(self):
        self.dir = None
        self.uri = None
        self.pids = {}          # name -> pid, in start order
        self.domains = []
        self._lock = None
        self._kvm = None        # (mode, uid, gid) of /dev/kvm before we changed it

    # ---- start / stop ----
    def start(self, timeout=90):
        q = os.environ.get("VMSNAP_QEMU")
        if q and shutil.which(q) != shutil.which("qemu-system-x86_64"):
            skip(f"libvirt runs the system QEMU, not VMSNAP_QEMU={q}: the pass on the system QEMU covers it")
        if os.geteuid() != 0:
            skip("libvirt tests need root (libvirtd runs the system QEMU driver)")
        for tool in ("libvirtd", "virtlogd", "virsh"):
            if not shutil.which(tool):
                skip(f"{tool} not installed (apt-get install libvirt-daemon-system libvirt-clients)")
        self._lock = open(LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        other = _running("libvirtd", "virtqemud")
        if other:
            skip(f"a libvirt daemon already runs (pid {other}); its QEMU driver would refuse a second one")
        atexit.register(self.stop)
        self.dir = tempfile.mkdtemp(prefix="vmsnap-libvirtd-")
        os.chmod(self.dir, 0o755)   # QEMU (libvirt-qemu) reads the guest's kernel and initrd from here
        for d in SYSTEM_DIRS:
            os.makedirs(d, exist_ok=True)
        self._fix_kvm()
        sock_dir = os.path.join(self.dir, "run")
        os.mkdir(sock_dir, 0o700)
        conf = os.path.join(self.dir, "libvirtd.conf")
        with open(conf, "w") as f:
            f.write(f'unix_sock_dir = "{sock_dir}"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\n'
                    f'auth_unix_ro = "none"\nlisten_tcp = 0\nlisten_tls = 0\n'
                    f'log_outputs = "3:file:{self.dir}/libvirtd.log"\n')
        self.uri = f"qemu:///system?socket={sock_dir}/libvirt-sock"
        t0 = time.monotonic()
        self._spawn("virtlogd", ["virtlogd", "-p", os.path.join(self.dir, "virtlogd.pid")],
                    lambda: os.path.exists("/run/libvirt/virtlogd-sock"), 20)
        self._spawn("libvirtd", ["libvirtd", "-f", conf, "-p", os.path.join(self.dir, "libvirtd.pid")],
                    lambda: self._answers(), timeout)
        log(f"libvirtd + virtlogd up in {time.monotonic() - t0:.1f} s (pids {self.pids})")
        return self

    def _spawn(self, name, argv, ready, timeout):
        logf = open(os.path.join(self.dir, f"{name}.out"), "w")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=vmtest._die_with_parent)
        self.pids[name] = p.pid
        deadline = time.monotonic() + timeout
        while not ready():
            if p.poll() is not None:
                raise TestFailure(f"{name} exited ({p.returncode}) at start" + vmtest._tail(logf.name))
            if time.monotonic() > deadline:
                raise TestFailure(f"{name} not ready within {timeout} s" + vmtest._tail(logf.name))
            time.sleep(0.1)

    def _answers(self):
        return subprocess.run(["virsh", "-c", self.uri, "uri"], capture_output=True).returncode == 0

    def _fix_kvm(self):
        # Without udev /dev/kvm is 0600 root. libvirt then finds KVM unusable by its QEMU user and probes QEMU's
        # capabilities again on every call (virsh define took 65 s here); Debian's usual 0660 root:kvm avoids it.
        # Domains use type 'qemu' (TCG) either way. Put back at stop().
        try:
            st = os.stat("/dev/kvm")
            kvm_gid = grp.getgrnam("kvm").gr_gid
        except (FileNotFoundError, KeyError):
            return
        if stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid != kvm_gid:
            self._kvm = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            os.chown("/dev/kvm", st.st_uid, kvm_gid)
            os.chmod("/dev/kvm", 0o660)

    def stop(self):
        for d in reversed(self.domains):
            self.virsh("destroy", d.name, check=False)
            self.virsh("undefine", d.name, check=False)
            if d._agent:
                d._agent.close()
        self.domains = []
        for name in reversed(list(self.pids)):   # libvirtd first, then virtlogd
            _kill_pid(self.pids.pop(name), name)
        if self._kvm:
            mode, uid, gid = self._kvm
            os.chown("/dev/kvm", uid, gid)
            os.chmod("/dev/kvm", mode)
            self._kvm = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._lock:
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # ---- clients ----
    def virsh(self, *args, check=True, timeout=120):
        p = subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise TestFailure(f"virsh {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout if check else p

    def domain(self, name, mem_mib=256, disks=()):
        """Define and start a TCG domain running the test guest, its ttyS0 on a Unix socket. disks: (path, format,
        target dev, readonly) each, on virtio-blk; QEMU (libvirt-qemu) must be able to open them."""
        g = vmtest.guest()
        kernel, initrd = os.path.join(self.dir, "vmlinuz"), os.path.join(self.dir, "initrd.gz")
        if not os.path.exists(kernel):
            shutil.copy(g.kernel, kernel)
            shutil.copy(g.initrd, initrd)
        # QEMU runs as libvirt-qemu and creates the serial socket: a directory it owns.
        con_dir = os.path.join(self.dir, f"con-{name}")
        os.mkdir(con_dir, 0o700)
        os.chown(con_dir, *_qemu_ids())
        console = os.path.join(con_dir, "ttyS0.sock")
        disk_xml = "".join(f"""
    <disk type='file' device='disk'><driver name='qemu' type='{fmt}'/><source file='{path}'/>
      <target dev='{dev}' bus='virtio'/>{"<readonly/>" if ro else ""}</disk>""" for path, fmt, dev, ro in disks)
        xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>{g.append}</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{EMULATOR}</emulator>
    <serial type='unix'><source mode='bind' path='{console}'/><target port='0'/></serial>{disk_xml}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""
        path = os.path.join(self.dir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        t0 = time.monotonic()
        self.virsh("define", path)
        d = Domain(self, name, console)
        self.domains.append(d)
        self.virsh("start", name)
        log(f"domain {name} defined and started in {time.monotonic() - t0:.2f} s")
        return d


def _running(*names):
    """pid of a running process with one of these names, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in names:
                    return int(pid)
        except OSError:
            pass
    return None


def _qemu_ids():
    import pwd
    pw = pwd.getpwnam("libvirt-qemu")
    return pw.pw_uid, pw.pw_gid


class Sysctl:
    """Set a sysctl for the duration of a with block, put back afterwards (also on failure)."""

    def __init__(self, name, value):
        self.path = "/proc/sys/" + name.replace(".", "/")
        self.value = str(value)
        self.old = None

    def __enter__(self):
        with open(self.path) as f:
            self.old = f.read().strip()
        with open(self.path, "w") as f:
            f.write(self.value)
        return self

    def __exit__(self, *a):
        with open(self.path, "w") as f:
            f.write(self.old)


def snap(lv, dom, out, uffd, *extra):
    """`vmsnap snap --libvirt DOMAIN -o out --json EXTRA...` with vm.unprivileged_userfaultfd=uffd: its JSON report and
    stderr. Checks the method each setting gives (0: QEMU refuses background-snapshot in its own words, precopy, the
    sysctl named once; 1: background-snapshot, no sysctl note)."""
    import json
    from vmtest import check, check_eq
    with Sysctl("vm.unprivileged_userfaultfd", uffd):
        p = vmtest.vmsnap("snap", "--libvirt", dom.name, "-c", lv.uri, "-o", out, "--json", *extra, check=False)
    check(p.returncode == 0, f"snap --libvirt {' '.join(extra)} exit 0 (uffd={uffd}): {p.stderr.strip()}")
    res = json.loads(p.stdout)
    log(f"uffd={uffd}: method {res['method']}, pause {res['pause'] * 1000:.1f} ms (freeze at "
        f"{res['freeze'] * 1000:.1f} ms), total {res['total']:.2f} s, {res['archive-bytes']} bytes; "
        f"reason {res['fallback-reason']!r}; stderr {p.stderr.strip()!r}")
    if uffd == 0:
        check_eq(res["method"], "precopy", "method without userfaultfd privilege")
        check("not supported by host kernel" in res["fallback-reason"], f"QEMU's words: {res['fallback-reason']!r}")
        check(p.stderr.count("vm.unprivileged_userfaultfd=1") == 1, f"the sysctl is named once: {p.stderr!r}")
    else:
        check_eq(res["method"], "background-snapshot", "method with vm.unprivileged_userfaultfd=1")
        check("vm.unprivileged_userfaultfd" not in p.stderr, f"no sysctl note: {p.stderr!r}")
    return res, p.stderr


class Booted:
    """`vmsnap boot ARCHIVE --detach --json ...` of a domain's archive, its console agent connected; with block: the
    QEMU it started is killed by pid at the end (also on failure)."""

    def __init__(self, archive, d, name, *args):
        self.qmp, self.con = os.path.join(d, f"{name}.qmp"), os.path.join(d, f"{name}.con")
        self.info = vmtest.vmsnap("boot", archive, "--detach", "--json", "--qmp", self.qmp, "--console", self.con,
                                  *args, json_out=True, timeout=180)
        self.pid = self.info["qemu-pid"]
        self.notes = self.info.get("replay-notes") or ""
        log(f"booted {os.path.basename(archive)} (qemu pid {self.pid}); replay-notes: {self.notes!r}")
        self.agent = None

    def __enter__(self):
        try:
            self.agent = vmtest.Agent(self.con).connect(120)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *a):
        if self.agent:
            self.agent.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
