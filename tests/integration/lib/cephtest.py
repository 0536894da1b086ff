"""cephtest: a real single-node Ceph with the RADOS Gateway for S3 tests (Python 3 stdlib only).

    import cephtest
    with cephtest.Ceph() as c:            # mon + one bluestore OSD (sparse file) + radosgw on 127.0.0.1
        c.make_bucket("b")
        env = c.env()                     # AWS_* variables that point vmsnap at the gateway
        c.stop_rgw(); c.start_rgw()       # the gateway away and back

Everything lives in one temporary directory (removed at the end). The daemons run in the foreground as children,
are stopped one at a time by pid (rgw, then the OSD, then the mon: stopping them together left rgw hung) and get
SIGKILL if the test process dies (PR_SET_PDEATHSIG). Settings: /work/shared/NOTES.md "Ceph RGW for S3 tests".
Ceph() raises vmtest.Skip only when the binaries are missing or the store cannot start.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import vmtest
from vmtest import log

ACCESS_KEY = "VMSNAPTESTACCESS0001"
SECRET_KEY = "vmsnaptestsecretkey0000000000000000000001"
REGION = "us-east-1"
RGW_POOLS = [".rgw.root", "default.rgw.log", "default.rgw.control", "default.rgw.meta",
             "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec"]
BINARIES = ["ceph-mon", "ceph-osd", "radosgw", "ceph", "ceph-authtool", "monmaptool", "radosgw-admin", "curl"]


class CountingProxy:
    """A TCP proxy in front of the gateway that counts the bytes the store sends back: what a client fetched, on
    the wire (headers included). SigV4 still verifies: the Host header the client signed reaches the gateway.
    cut()/restore() take the store away from the proxy's clients and give it back at once (fault injection: a
    restarted gateway takes a time the test cannot bound on a loaded host)."""

    def __init__(self, port):
        self.port, self.down = port, 0
        self._lock = threading.Lock()
        self._cut, self._conns = False, set()
        self._ls = socket.socket()
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._ls.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def fetched(self):
        with self._lock:
            return self.down

    def cut(self):
        """From now on connections are reset at once, open ones too: the client sees a store that does not answer."""
        with self._lock:
            self._cut = True
            conns, self._conns = self._conns, set()
        for x in conns:
            _reset(x)

    def restore(self):
        with self._lock:
            self._cut = False

    def _accept(self):
        while True:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            try:
                if cut:
                    raise OSError("cut")
                u = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                _reset(c)
                continue
            with self._lock:
                self._conns.update((c, u))
            for a, b, count in ((c, u, False), (u, c, True)):
                threading.Thread(target=self._pipe, args=(a, b, count), daemon=True).start()

    def _pipe(self, a, b, count):
        try:
            while True:
                d = a.recv(1 << 16)
                if not d:
                    break
                if count:
                    with self._lock:
                        self.down += len(d)
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._conns.difference_update((a, b))

    def close(self):
        self._ls.close()


def _reset(s):
    """Close with a reset (RST), as a peer that went away; the shutdown wakes a thread blocked reading it."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Ceph:
    def __init__(self):
        for b in BINARIES:
            if not shutil.which(b):
                vmtest.skip(f"{b} not found (apt-get install ceph-mon ceph-osd radosgw ceph-common curl)")
        self.d = tempfile.mkdtemp(prefix="vmsnap-ceph-")
        self.procs = {}
        self.mon_port, self.rgw_port = _free_port(), _free_port()
        self.endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.conf = os.path.join(self.d, "ceph.conf")
        try:
            t0 = time.monotonic()
            self._setup()
            log(f"ceph: ready in {time.monotonic() - t0:.1f} s, gateway {self.endpoint} (dir {self.d})")
        except vmtest.TestFailure as e:
            self.close()
            vmtest.skip(f"the Ceph store did not start: {e}")
        except BaseException:
            self.close()
            raise

    # ---- setup ------------------------------------------------------------------------------------------------
    def _write_conf(self):
        d = self.d
        with open(self.conf, "w") as f:
            f.write(f"""[global]
fsid = {self.fsid}
mon host = [v2:127.0.0.1:{self.mon_port}]
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
keyring = {d}/$name.keyring
mon data = {d}/mon.$id
osd data = {d}/osd.$id
osd objectstore = bluestore
bluestore block path = {d}/osd.$id.block
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mkfs = false
osd memory target = 939524096
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.05
mon osd down out interval = 600
osd heartbeat grace = 60
mon allow pool delete = true
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port} tcp_nodelay=1
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
""")

    def _run(self, *cmd, timeout=60):
        p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if p.returncode != 0:
            raise vmtest.TestFailure(f"{' '.join(cmd)} exited {p.returncode}: {p.stdout.strip()[-800:]}")
        return p.stdout

    def ceph(self, *args, timeout=60):
        return self._run("ceph", "-c", self.conf, *args, timeout=timeout)

    def _start(self, name, *cmd):
        logf = open(os.path.join(self.d, "log", f"{name}.out"), "w")
        p = subprocess.Popen(list(cmd), stdout=logf, stderr=subprocess.STDOUT, preexec_fn=vmtest._die_with_parent)
        logf.close()
        self.procs[name] = p
        return p

    def _setup(self):
        d, c = self.d, self.conf
        self.fsid = str(uuid.uuid4())
        for sub in ("run", "log", "mon.a", "osd.0", "rgw"):
            os.makedirs(os.path.join(d, sub))
        self._write_conf()
        monk, admk = os.path.join(d, "mon.keyring"), os.path.join(d, "client.admin.keyring")
        self._run("ceph-authtool", "--create-keyring", monk, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
        self._run("ceph-authtool", "--create-keyring", admk, "--gen-key", "-n", "client.admin", "--cap", "mon",
                  "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", monk, "--import-keyring", admk)
        monmap = os.path.join(d, "monmap")
        self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", "--fsid", self.fsid,
                  monmap)
        self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", monk)
        self._start("mon", "ceph-mon", "-c", c, "-f", "-i", "a")
        self._wait(lambda: self._ok("ceph", "-c", c, "--connect-timeout", "2", "mon", "stat"), 30, "the mon")
        for pool in RGW_POOLS:   # up front: rgw would create them one at a time, much slower
            self.ceph("osd", "pool", "create", pool, "8")
            self.ceph("osd", "pool", "application", "enable", pool, "rgw")
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        osdk = os.path.join(d, "osd.0.keyring")
        self._run("ceph-authtool", "--create-keyring", osdk, "--gen-key", "-n", f"osd.{osd_id}")
        self.ceph("auth", "add", f"osd.{osd_id}", "osd", "allow *", "mon", "allow profile osd", "mgr",
                  "allow profile osd", "-i", osdk)
        self._run("ceph-osd", "-c", c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, timeout=120)
        self._start("osd", "ceph-osd", "-c", c, "-f", "-i", osd_id)
        self._wait(lambda: '"num_up_osds":1' in self.ceph("osd", "stat", "-f", "json").replace(" ", ""), 60,
                   "the OSD up")
        rgwk = os.path.join(d, "client.rgw.gw.keyring")
        self._run("ceph-authtool", "--create-keyring", rgwk, "--gen-key", "-n", "client.rgw.gw")
        self.ceph("auth", "add", "client.rgw.gw", "mon", "allow rw", "osd", "allow rwx", "-i", rgwk)
        self.start_rgw()
        self._run("radosgw-admin", "-c", c, "user", "create", "--uid", "vmsnap", "--display-name", "vmsnap test",
                  "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, timeout=60)

    def _ok(self, *cmd):
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30).returncode == 0

    def _wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred():
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise vmtest.TestFailure(f"ceph {n} exited {p.returncode} while waiting for {what}"
                                             + vmtest._tail(os.path.join(self.d, "log", f"{n}.out")))
            if time.monotonic() > deadline:
                raise vmtest.TestFailure(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)

    def _rgw_answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.rgw_port), timeout=1).close()
            return True
        except OSError:
            return False

    # ---- the gateway ------------------------------------------------------------------------------------------
    def start_rgw(self):
        self._start("rgw", "radosgw", "-c", self.conf, "-f", "-n", "client.rgw.gw")
        self._wait(self._rgw_answers, 60, "the gateway")

    def stop_rgw(self, sig=signal.SIGTERM):
        self._stop("rgw", sig)

    def _stop(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if not p or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    # ---- S3 for the tests themselves (curl's SigV4, as vmsnap's libcurl) -------------------------------------
    def env(self, **over):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("AWS_"):
                del e[k]
        e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION,
                 AWS_ENDPOINT_URL=self.endpoint, AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.d, "no-credentials"),
                 AWS_CONFIG_FILE=os.path.join(self.d, "no-config"))
        e.update(over)
        return e

    def curl(self, method, path, *extra, check=True):
        cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--aws-sigv4", f"aws:amz:{REGION}:s3",
               "--user", f"{ACCESS_KEY}:{SECRET_KEY}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
               *extra, f"{self.endpoint}/{path}"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        body, _, code = p.stdout.rpartition(b"\n")
        code = int(code or 0)
        if check and not 200 <= code < 300:
            raise vmtest.TestFailure(f"curl {method} {path}: HTTP {code}: {body[:300]!r} {p.stderr[-300:]!r}")
        return code, body

    def make_bucket(self, name):
        self.curl("PUT", name)

    def put(self, bucket, key, path):
        self.curl("PUT", f"{bucket}/{key}", "-T", path)

    def keys(self, bucket):
        """Object keys in the bucket (one listing page is plenty for tests)."""
        _, body = self.curl("GET", f"{bucket}?list-type=2")
        import re
        return re.findall(r"<Key>([^<]*)</Key>", body.decode())

    def uploads(self, bucket):
        """Multipart uploads still open in the bucket."""
        _, body = self.curl("GET", f"{bucket}?uploads=")
        import re
        return re.findall(r"<UploadId>([^<]*)</UploadId>", body.decode())

    # ---- teardown ---------------------------------------------------------------------------------------------
    def close(self):
        for n in ("rgw", "osd", "mon"):
            self._stop(n)
        shutil.rmtree(self.d, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False
