"""snap of a QMP socket that does not exist fails cleanly: exit 1, one line naming the socket and saying "No such
file", nothing under the output name and no temp file beside it. No QEMU."""
import os
import shutil

from vmsnaptest import check_snap_failed, tmpdir, vmtest


def test():
    d = tmpdir()
    try:
        out = os.path.join(d, "x.vmsnap")
        p = vmtest.vmsnap("snap", "--qmp", os.path.join(d, "nope.qmp"), "-o", out, check=False)
        check_snap_failed(p, ["nope.qmp", "No such file"], out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


vmtest.main(test)
