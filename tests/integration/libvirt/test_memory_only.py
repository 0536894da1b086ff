"""snap --libvirt DOMAIN --memory-only against a real libvirt daemon and a running TCG domain, with the Debian default
vm.unprivileged_userfaultfd=0 (QEMU runs as libvirt-qemu: background-snapshot refused, precopy fallback, the sysctl
named) and with 1 (background-snapshot). Each time: the domain stays running, the guest's heartbeat goes on, every
migration capability and parameter is as before. Then `vmsnap boot` of the archive: it resumes the guest with its RAM
pattern, or fails with one clear line carrying QEMU's words (libvirt's command line is not replayable yet)."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lvtest  # noqa: E402
import vmtest  # noqa: E402
from vmtest import check, check_eq, log  # noqa: E402



def migration_settings(dom):
    caps = {c["capability"]: c["state"] for c in dom.qmp("query-migrate-capabilities")}
    return caps, dom.qmp("query-migrate-parameters")


def snap(lv, dom, out, uffd):
    agent = dom.agent()
    before = migration_settings(dom)
    hb0 = agent.last_heartbeat()
    res, _ = lvtest.snap(lv, dom, out, uffd, "--memory-only")
    check(os.path.getsize(out) > 16 << 20, "the archive holds the 16 MiB random fill")
    check(dom.state().startswith("running"), f"domain running after the snapshot: {dom.state()!r}")
    t1 = time.monotonic()
    agent.wait_heartbeats(5)
    hb = agent.heartbeats(since=t1)
    check(hb and hb[-1][1] > hb0[1], f"heartbeat counter went on ({hb0[1]} -> {hb[-1][1] if hb else None})")
    check_eq(migration_settings(dom), before, "migration capabilities and parameters after snap")
    return res


def test():
    d = tempfile.mkdtemp(prefix="vmsnap-lvtest-")
    try:
        p = vmtest.vmsnap("snap", "--qmp", "/nonexistent", "--libvirt", "x", "--memory-only", "-o",
                          os.path.join(d, "x.vmsnap"), check=False)
        check(p.returncode == 2 and "exclusive" in p.stderr, f"--qmp with --libvirt: usage error: {p.stderr!r}")
        with lvtest.Libvirtd() as lv:
            bad = os.path.join(d, "bad.vmsnap")
            p = vmtest.vmsnap("snap", "--libvirt", "vmsnap-no-such-domain", "-c", lv.uri, "--memory-only", "-o", bad,
                              check=False)
            err = p.stderr.strip()
            check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err
                  and "'vmsnap-no-such-domain'" in err and "no such domain" in err, f"unknown domain: {err!r}")
            check(not os.path.exists(bad), "no archive for an unknown domain")
            dom = lv.domain(f"vmsnap-test-{os.getpid()}")
            agent = dom.agent()
            boot_id = agent.boot_id
            agent.cmd("fill 16 seed=11")
            xml = lv.virsh("dumpxml", dom.name)
            outs = {}
            for uffd in (0, 1):
                outs[uffd] = os.path.join(d, f"uffd{uffd}.vmsnap")
                snap(lv, dom, outs[uffd], uffd)
            info = " ".join(lv.virsh("dominfo", dom.name).split())
            check("tainted: custom monitor" in info, f"libvirt records the monitor use as a taint: {info!r}")
            with open(f"/var/log/libvirt/qemu/{dom.name}.log") as f:
                check("tainted: custom-monitor" in f.read(), "and in the domain's log")
            check_eq(lv.virsh("dumpxml", dom.name), xml, "domain XML after the snapshots")
            check_eq(lv.virsh("snapshot-list", "--name", dom.name).strip(), "", "libvirt snapshot metadata")
            # A domain's command line names host files and fds libvirt made for it: boot refuses to replay it
            # unless the user trusts the archive (docs/SECURITY.md), and starts nothing.
            p = vmtest.vmsnap("boot", outs[1], "--detach", "--json", "--qmp", os.path.join(d, "r.qmp"), "--console",
                              os.path.join(d, "r.con"), check=False, timeout=180)
            err = p.stderr.strip()
            log(f"boot of a libvirt domain's archive: {err}")
            check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err, f"one clear line: {err!r}")
            check("--trust-archive" in err, f"it names --trust-archive: {err!r}")
            check(not os.path.exists(os.path.join(d, "r.qmp")), "no QEMU was started")
            check(dom.state().startswith("running"), "the domain still runs")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
