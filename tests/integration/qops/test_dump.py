"""vmsnap dump on a real QEMU: an ELF dump whose notes (readelf -n: CORE and QEMU) and memory size (PT_LOAD sizes
add up to the guest's RAM) are checked, written 0600 through an fd; a kdump-zlib dump; a format QEMU lacks is refused
with the list it has and leaves no file; the VM runs afterwards (stays paused if it was paused)."""
import os
import re
import shutil
import stat
import subprocess
import tempfile

from qopslib import check, log, vmsnap, vmtest

RAM = 128 << 20
ALL_FORMATS = ["elf", "kdump-zlib", "kdump-lzo", "kdump-snappy", "win-dmp"]


def load_sizes(path):
    out = subprocess.run(["readelf", "-lW", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    sizes = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            sizes.append(int(f[4], 16))    # FileSiz
    return sizes


def test():
    vmtest.require_tool("readelf")
    with tempfile.TemporaryDirectory(prefix="vmsnap-qops-") as d:
        with vmtest.VM(mem="128M", name="dump") as vm:
            agent = vm.agent()
            S = vm.qmp_path
            agent.cmd("fill 16 seed=7")
            out = os.path.join(d, "mem.elf")
            r = vmsnap("dump", "--qmp", S, "-o", out, "--json").json()
            check(vm.qmp.status() == "running", "VM not running after the dump")
            # QEMU resumes the VM itself after a dump, but only after it sent DUMP_COMPLETED: vmsnap may find it
            # still paused and send cont first (seen on QEMU 10). --json says which, as snap --json does.
            check(r.get("resumed-by") in ("qemu", "vmsnap") and r.get("state-before") == "running" and
                  r.get("state-after") == "running", f"run state in the report: {r}")
            log(f"running VM's dump: resumed by {r['resumed-by']}")
            st = os.stat(out)
            check(stat.S_IMODE(st.st_mode) == 0o600, f"dump mode {oct(st.st_mode)}")
            check(r["size"] == st.st_size and r["format"] == "elf", f"report {r} vs size {st.st_size}")
            check(RAM <= r["memory"] <= RAM + (16 << 20), f"QEMU dumped {r['memory']} bytes of a {RAM} guest")

            notes = subprocess.run(["readelf", "-n", out], stdout=subprocess.PIPE, text=True, check=True).stdout
            check(re.search(r"^\s+CORE\s+0x[0-9a-f]+\s+NT_PRSTATUS", notes, re.M), f"no CORE prstatus note:\n{notes}")
            check(re.search(r"^\s+QEMU\s+0x", notes, re.M), f"no QEMU note:\n{notes}")
            sizes = load_sizes(out)
            total = sum(sizes)
            log(f"ELF dump: {st.st_size} bytes, PT_LOAD {sizes} = {total} (RAM {RAM})")
            check(RAM <= total <= RAM + (16 << 20), f"PT_LOAD sizes add up to {total}, RAM is {RAM}")
            if shutil.which("gdb"):
                g = subprocess.run(["gdb", "-batch", "-nx", "-ex", "info registers rip", "-c", out],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60).stdout
                check(re.search(r"^rip\s+0x", g, re.M), f"gdb cannot read the dump's registers:\n{g}")
            agent.cmd("verify seed=7")

            formats = vm.qmp.cmd("query-dump-guest-memory-capability")["formats"]
            missing = [f for f in ALL_FORMATS if f not in formats]
            if missing:
                bad = os.path.join(d, "bad.dump")
                e = vmsnap("dump", "--qmp", S, "-o", bad, "--format", missing[0], rc=1).err
                check(f"'{missing[0]}'" in e and ", ".join(formats) in e, f"unsupported format message: {e}")
                check(sorted(os.listdir(d)) == ["mem.elf"], f"files left after a refused dump: {os.listdir(d)}")
            vmsnap("dump", "--qmp", S, "-o", os.path.join(d, "x"), "--format", "zip", rc=1)
            vmsnap("dump", "--qmp", S, rc=2)
            vmsnap("dump", "--qmp", S, "-o", os.path.join(d, "y"), "--format", "kdump-zlib", "--paging", rc=2)
            e = vmsnap("dump", "--qmp", S, "-o", os.path.join(d, "nodir", "x"), rc=1).err
            check("nodir" in e, f"missing directory message: {e}")

            # A paused VM stays paused, and --json says it was left so.
            fmt = "kdump-zlib" if "kdump-zlib" in formats else "elf"
            kd = os.path.join(d, "mem.kdump")
            vm.qmp.cmd("stop")
            r = vmsnap("dump", "--qmp", S, "-o", kd, "--format", fmt, "--json").json()
            check(vm.qmp.status() == "paused", "a paused VM was resumed by the dump")
            check((r.get("resumed-by"), r.get("state-before"), r.get("state-after")) ==
                  ("left-paused-as-found", "paused", "paused"), f"run state in the report of a paused VM's dump: {r}")
            vm.qmp.cmd("cont")
            if fmt == "kdump-zlib":
                with open(kd, "rb") as f:
                    sig = f.read(12)
                # QEMU 7.2 writes makedumpfile's flattened format to a pipe-like fd, newer ones plain kdump.
                check(sig == b"makedumpfile" or sig[:8] == b"KDUMP   ", f"kdump signature {sig!r}")
                log(f"kdump-zlib dump: {os.path.getsize(kd)} bytes")
            check(vm.qmp.status() == "running", "VM not running at the end")


vmtest.main(test)
