"""snap --libvirt DOMAIN --memory-only against a real libvirt daemon and a running TCG domain, with the Debian default
vm.unprivileged_userfaultfd=0 (QEMU runs as libvirt-qemu: background-snapshot refused, precopy fallback, the sysctl
named) and with 1 (background-snapshot). Each time: the domain stays running, the guest's heartbeat goes on, every
migration capability and parameter is as before. Then `vmsnap boot` of the archive without --trust-archive: refused
in one line while the domain's kernel and initrd (host files) are not given; given after "--", libvirt's JSON options
pass the allow-list and the guest resumes with its RAM pattern. A copy of the archive whose config adds forbidden
members in JSON is refused, naming each, and starts nothing."""
import json
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


def refused(archive, d, want, *args):
    """boot of archive refused in one line naming want and --trust-archive, no QEMU started; the line."""
    qmp = os.path.join(d, "r.qmp")
    p = vmtest.vmsnap("boot", archive, "--detach", "--json", "--qmp", qmp, "--console", os.path.join(d, "r.con"),
                      *args, check=False, timeout=180)
    err = p.stderr.strip()
    log(f"boot of {os.path.basename(archive)}: {err}")
    check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err, f"one clear line: {err!r}")
    check("--trust-archive" in err and want in err, f"it names {want!r} and --trust-archive: {err!r}")
    check(not os.path.exists(qmp), "no QEMU was started")
    return err


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
            # The domain's kernel and initrd are host files the archive does not store: boot refuses them unless
            # the user gives them or trusts the archive (docs/SECURITY.md), and starts nothing.
            refused(outs[1], d, "'-kernel ")
            check(dom.state().startswith("running"), "the domain still runs")
            # Given after "--": libvirt's JSON -object/-device/-audiodev and its -sandbox pass the allow-list, what
            # only libvirt gave its QEMU is rewritten (noted), and the guest resumes, without --trust-archive.
            g = vmtest.guest()
            with lvtest.Booted(outs[1], d, "b", "--", "-kernel", g.kernel, "-initrd", g.initrd) as b:
                check("secret masterKey0" in b.notes, f"the master key's drop is noted: {b.notes!r}")
                check(not b.info.get("trusted"), f"nothing passed unchecked: {b.info.get('trusted')!r}")
                check_eq(b.agent.wait_ready(120), boot_id, "resumed the domain's guest (same boot id)")
                check(b.agent.cmd("verify seed=11"), "the guest's RAM pattern is intact")
            # The same archive's config with forbidden members hidden in JSON: refused, naming each.
            cfg_path = os.path.join(d, "cfg.json")
            vmtest.vmsnap("extract", outs[1], "--config", "-o", cfg_path)
            with open(cfg_path) as f:
                cfg = json.load(f)
            cfg["cmdline"] += ["-netdev", json.dumps({"type": "user", "id": "n9", "script": "/bin/sh"}),
                               "-blockdev", json.dumps({"driver": "qcow2", "node-name": "x9",
                                                        "file": {"driver": "file", "filename": "/etc/shadow"}}),
                               "-device", '{"driver":"virtio-rng-pci","id":"r9","driver":"vfio-pci"}']
            with open(cfg_path, "w") as f:
                json.dump(cfg, f)
            mem = os.path.join(d, "mem")   # never read: the check comes first
            with open(mem, "wb") as f:
                f.write(bytes(4096))
            tampered = os.path.join(d, "tampered.vmsnap")
            vmtest.vmsnap("pack", "--memory", mem, "--config", cfg_path, "-o", tampered, "--quiet")
            err = refused(tampered, d, "'-netdev {", "--", "-kernel", g.kernel, "-initrd", g.initrd)
            for want in ("key 'script'", "file.filename: names a file", "a key repeated"):
                check(want in err, f"the tampered archive's refusal names {want!r}: {err!r}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
