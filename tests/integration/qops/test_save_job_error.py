"""internal save whose snapshot-save job fails midway (fake QMP server, no QEMU): vmsnap exits 1 with one line
carrying the job's own error from query-jobs and naming the job, dismisses the job and resumes the VM QEMU left
stopped; the job was given the qcow2 node as device and vmstate, and the tag."""
import os

from fakeqemu import FakeQemu, check, main, run


def test(d):
    jobs = FakeQemu(os.path.join(d, "jobs.sock"), ["snapshot-save", "snapshot-load", "snapshot-delete"])
    p = run("internal", "save", "--qmp", jobs.path, "t1")
    check(p.returncode == 1 and "No space left on device" in p.stderr and "job 'vmsnap-save-" in p.stderr,
          f"job error not reported: {p.stderr!r}")
    check(p.stderr.count("\n") == 1, "error is one line")
    names = [n for n, _ in jobs.log]
    check("job-dismiss" in names, f"job not dismissed: {names}")
    # cont, then the state read back: resumed and checked
    check(jobs.running and names[-2:] == ["cont", "query-status"], f"VM not resumed after the failed job: {names}")
    save = next(a for n, a in jobs.log if n == "snapshot-save")
    check(save["devices"] == ["disk0"] and save["vmstate"] == "disk0" and save["tag"] == "t1", f"args: {save}")


main(test)
