"""Fan-out: many clones of one snapshot at once (128 MiB guest, 16 MiB pattern).

1. `boot --count 3 --json` starts three detached clones in one command and reports each one's paths: distinct run
   directories, QMP and console sockets, one page server; each guest's pattern verifies.
2. `--count 1` detaches too. `--count` with a --qmp path without {n} is a usage error (exit 2); with {n} each clone gets its own path.
3. Three `boot --detach` run in parallel (no shared lock of their own): all run, on one page server, pattern good.
4. When they all end, the page server is gone and nothing is mounted."""
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
from vmsnaptest import Booted, base_archive, check, guest_args, log, snap, tmpdir, vmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_clones_shared import mounts_under, running, wait_gone  # noqa: E402

N = 3


def stop_all(infos):
    for i in infos:
        if running(i["qemu-pid"]):
            os.kill(i["qemu-pid"], signal.SIGKILL)
    for i in infos:
        wait_gone(i["boot-pid"], "a clone's boot host")


def verify(infos):
    for i in infos:
        agent = vmtest.Agent(i["console"]).connect()
        try:
            agent.cmd("verify seed=5", timeout=120)
        finally:
            agent.close()


def test():
    d = tmpdir()
    infos = []
    try:
        src = Booted(base_archive(d), d, "src", extra=guest_args(), args=["--ram", "128M"])
        src.agent.wait_ready(120)
        src.agent.cmd("fill 16 seed=5")
        out = os.path.join(d, "warm.vmsnap")
        snap(src.qmp_path, out)
        src.close()

        p = vmtest.vmsnap("boot", out, "--count", "2", "--qmp", os.path.join(d, "x.qmp"), check=False)
        check(p.returncode == 2 and "{n}" in p.stderr, f"--count with a fixed --qmp path: usage error ({p.stderr})")

        t0 = time.monotonic()
        res = vmtest.vmsnap("boot", out, "--count", str(N), "--json", "--qmp", os.path.join(d, "c{n}.qmp"),
                            json_out=True, timeout=180)
        infos = res["clones"]
        log(f"--count {N}: all running in {res['all-running']:.3f} s (command {time.monotonic() - t0:.3f} s)")
        check(len(infos) == N, f"{N} clones reported")
        check([i["qmp"] for i in infos] == [os.path.join(d, f"c{k}.qmp") for k in range(N)], "--qmp's {n} expanded")
        for key in ("rundir", "console", "clone-id", "generation-id", "qemu-pid"):
            check(len({str(i[key]) for i in infos}) == N, f"each clone has its own {key}")
        check(len({i["page-server-pid"] for i in infos}) == 1 and all(i["lazy"] for i in infos),
              "all clones resumed lazily on one page server")
        verify(infos)
        server = infos[0]["page-server-pid"]
        stop_all(infos)
        wait_gone(server, "the page server")
        infos = []

        one = vmtest.vmsnap("boot", out, "--count", "1", "--json", json_out=True, timeout=180)
        check(len(one["clones"]) == 1, "--count 1 detaches and reports one clone")
        stop_all(one["clones"])

        results = [None] * N

        def boot(k):
            results[k] = vmtest.vmsnap("boot", out, "--detach", "--json", check=False, timeout=180)

        threads = [threading.Thread(target=boot, args=(k,)) for k in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            check(r.returncode == 0, f"a parallel boot --detach succeeded: {r.stderr}")
            infos.append(json.loads(r.stdout))
        check(len({i["page-server-pid"] for i in infos}) == 1, f"{N} parallel boots found one page server")
        verify(infos)
        server = infos[0]["page-server-pid"]
        mnt = os.path.dirname(os.path.dirname(infos[0]["memory-file"]))
        stop_all(infos)
        infos = []
        wait_gone(server, "the page server, once the last clone ended")
        check(not mounts_under(mnt), f"nothing mounted under {mnt}")
    finally:
        for i in infos:
            if running(i["qemu-pid"]):
                os.kill(i["qemu-pid"], signal.SIGKILL)


vmtest.main(test)
