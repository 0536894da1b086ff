"""Helpers of the working-set tests: the run directory's record and report (docs/LAZY-RESUME.md §11)."""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402
from vmtest import check  # noqa: E402

PAGE = 4096


def parse_record(data):
    """docs/FORMAT.md, "Working set" (the checksum is checked by vmsnap itself when it reads the record)."""
    check(data[:8] == b"vmsnapws", f"record magic: {data[:8]!r}")
    version, hsize, nstreams, n = struct.unpack_from("<IIII", data, 8)
    check((version, hsize) == (1, 32), f"version 1, 32-byte header: {version}, {hsize}")
    at, streams = 32, []
    for _ in range(nstreams):
        size, ln = struct.unpack_from("<QB", data, at)
        streams.append((data[at + 9:at + 9 + ln].decode(), size))
        at += 9 + ln
    entries = [struct.unpack_from("<IIQ", data, at + 16 * i) for i in range(n)]
    check(at + 16 * n + 8 == len(data), f"record length: {len(data)} bytes for {n} ranges")
    return streams, [(s, off, pages * PAGE) for s, pages, off in entries]


def wait_report(rundir, key, timeout=90):
    path = os.path.join(rundir, "ws.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                doc = json.load(f)
            if key in doc or "error" in doc:
                return doc
        time.sleep(0.2)
    raise vmtest.TestFailure(f"no '{key}' in {path} after {timeout} s")


def read_record(path):
    with open(path, "rb") as f:
        return parse_record(f.read())
