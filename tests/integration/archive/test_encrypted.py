"""Encrypted archives through the CLI, without QEMU (qemu-img and qemu-io as independent NBD peers): keygen, pack
--encrypt, info without and with the key, verify/extract with --key and VMSNAP_KEY_FILE, the one-line refusals,
thin children (the parent's key, refused with another or over a plain parent), cp --key --with-parents, cp --encrypt
of a plain chain and re-encryption, serve --key read by qemu-img, and
commit of an overlay written through qemu-io (sealed with the base's key, or another for a thick archive)."""
import json
import os
import signal
import socket
import subprocess
import time

from archivetest import check, main, run, sample


def keygen(path):
    return run("keygen", "-o", path).stdout.split()[-1]


def refused(p, words):
    err = p.stderr.strip()
    print(f"  -> {p.returncode}: {err}")
    check(p.returncode == 1 and err.startswith("vmsnap: ") and "\n" not in err, f"one-line failure: {err!r}")
    for w in words:
        check(w in err, f"message names {w!r}")


def same(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


class Server:
    def __init__(self, d, archive, *args):
        self.sock = os.path.join(d, "nbd.sock")
        self.proc = subprocess.Popen([os.environ.get("VMSNAP", "build/vmsnap"), "serve", archive, "--socket",
                                      self.sock, *args], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.proc.stderr.read().decode()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                time.sleep(0.02)
            if time.monotonic() > deadline:
                raise AssertionError("serve socket never appeared")
        self.uri = "nbd+unix:///?socket=" + self.sock

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def test(d):
    s = sample(d)
    k1, k2 = os.path.join(d, "k1.key"), os.path.join(d, "k2.key")
    id1, id2 = keygen(k1), keygen(k2)
    e = os.path.join(d, "e.vmsnap")
    run("pack", s.img, "--memory", s.mem, "--config", s.cfg, "-o", e, "--encrypt", k1, "--quiet")
    with open(e, "rb") as f:
        data = f.read()
    check(b"quick brown fox" not in data and b"qemu_version" not in data and b"disk0" not in data,
          "no file text, config key or stream name in the clear")

    p = run("info", e)
    check(f"encrypted: with key {id1}" in p.stdout, "info without the key says encrypted, with the key's id")
    # the cipher: AES-256-GCM where this CPU has AES-NI, else (or asked for) XChaCha20-Poly1305; both read back
    aes = "aes" in open("/proc/cpuinfo").read().split()
    check(json.loads(run("info", e, "--json").stdout)["cipher"] == ("aes-256-gcm" if aes else "xchacha20-poly1305"),
          "the default cipher: AES-256-GCM with AES-NI")
    x = os.path.join(d, "x.vmsnap")
    run("pack", s.img, "-o", x, "--encrypt", k1, "--cipher", "xchacha20-poly1305", "--quiet")
    check(json.loads(run("info", x, "--json").stdout)["cipher"] == "xchacha20-poly1305", "pack --cipher")
    run("verify", x, "--key", k1)
    p = run("pack", s.img, "-o", x + "2", "--encrypt", k1, "--cipher", "rot13", ok=(2,))
    check("unknown cipher 'rot13'" in p.stderr and not os.path.exists(x + "2"), "an unknown --cipher: usage error")
    os.unlink(x)
    j = json.loads(run("info", e, "--json").stdout)
    check(j["encrypted"] and j["key_id"] == id1 and j["sealed"] and j["streams"] == [], "info --json: sealed")
    j = json.loads(run("info", e, "--json", "--key", k1).stdout)
    check(not j["sealed"] and [x["name"] for x in j["streams"]][:2] == ["disk0", "memory"], "info --key: streams")

    refused(run("verify", e, ok=(1,)), [f"archive {e} is encrypted with key {id1}; pass --key"])
    refused(run("verify", e, "--key", k2, ok=(1,)), [id1, id2])
    refused(run("extract", e, "--disk", "0", "-o", os.path.join(d, "x"), ok=(1,)), [id1, "pass --key"])
    check(not os.path.exists(os.path.join(d, "x")), "nothing extracted without the key")
    run("verify", e, "--key", k1)
    run("verify", e, env=dict(os.environ, VMSNAP_KEY_FILE=k1))
    for what, ref in (("--disk", s.img), ("--memory", s.mem), ("--config", s.cfg)):
        out = os.path.join(d, "out" + what)
        run("extract", e, *([what, "0"] if what == "--disk" else [what]), "-o", out, "--key", k1)
        check(same(out, ref), f"extract {what} --key: the packed bytes")
        os.unlink(out)

    # thin children: the parent's key
    img2 = os.path.join(d, "disk2.raw")
    with open(s.img, "rb") as f, open(img2, "wb") as g:
        g.write(f.read())
        g.seek(5 << 20)
        g.write(s.rnd.randbytes(300000))
    c = os.path.join(d, "c.vmsnap")
    run("pack", img2, "--parent", e, "-o", c, "--key", k1, "--quiet")
    j = json.loads(run("info", c, "--json", "--key", k1).stdout)
    check(j["encrypted"] and j["key_id"] == id1 and j["parent"] is not None, "thin child sealed with the parent's key")
    check(j["streams"][0]["parent_blocks"] > 0, "the child references its parent's blocks")
    out = os.path.join(d, "c.raw")
    run("extract", c, "--disk", "0", "-o", out, "--key", k1)
    check(same(out, img2), "the thin child reads back through its encrypted parent")
    os.unlink(out)
    c2 = os.path.join(d, "c2.vmsnap")
    refused(run("pack", img2, "--parent", e, "-o", c2, "--key", k1, "--encrypt", k2, ok=(1,)),
            ["a thin archive uses its parent's key", id1, id2])
    refused(run("pack", img2, "--parent", s.arc, "-o", c2, "--encrypt", k2, ok=(1,)), ["is not encrypted"])
    check(not os.path.exists(c2), "no archive left by a refused pack")

    # cp: sealed bytes copied as they are, checked with the key; a thin child with its encrypted parent
    far = os.path.join(d, "far")
    os.mkdir(far)
    refused(run("cp", c, os.path.join(far, "c.vmsnap"), "--with-parents", ok=(1,)), [id1, "pass --key"])
    check(not os.listdir(far), "nothing copied without the key")
    run("cp", c, os.path.join(far, "c.vmsnap"), "--with-parents", "--key", k1)
    check(same(os.path.join(far, "e.vmsnap"), e) and same(os.path.join(far, "c.vmsnap"), c),
          "cp --key --with-parents: both archives byte for byte")
    run("verify", os.path.join(far, "c.vmsnap"), "--key", k1)

    # cp --encrypt: a plain chain written anew, sealed (parents first); an encrypted one re-encrypted with its key
    pc = os.path.join(d, "pc.vmsnap")
    run("pack", img2, "--parent", s.arc, "-o", pc, "--quiet")
    run("keygen", "--sign", "-o", os.path.join(d, "sig.key"))
    run("sign", s.arc, "--key", os.path.join(d, "sig.key"))
    enc = os.path.join(d, "enc")
    os.mkdir(enc)
    refused(run("cp", pc, os.path.join(enc, "pc.vmsnap"), "--encrypt", k1, ok=(1,)), [pc, "add --with-parents"])
    out = json.loads(run("cp", pc, os.path.join(enc, "pc.vmsnap"), "--with-parents", "--encrypt", k1,
                         "--json").stdout)
    check([(os.path.basename(x["dst"]), x["key_id"], x["from_key_id"]) for x in out["copied"]]
          == [("a.vmsnap", id1, None), ("pc.vmsnap", id1, None)], f"cp --encrypt: parent, then child: {out}")
    check(sorted(os.listdir(enc)) == ["a.vmsnap", "pc.vmsnap"], "no signature carried to a new archive")
    j = json.loads(run("info", os.path.join(enc, "pc.vmsnap"), "--json", "--key", k1).stdout)
    check(j["encrypted"] and j["parent"]["hint"] == "a.vmsnap" and j["streams"][0]["parent_blocks"] > 0,
          "the encrypted child refers to its encrypted parent")
    for name, ref in (("pc.vmsnap", img2), ("a.vmsnap", s.img)):
        out = os.path.join(d, "x.raw")
        run("extract", os.path.join(enc, name), "--disk", "0", "-o", out, "--key", k1)
        check(same(out, ref), f"cp --encrypt: {name} reads back as its source")
        os.unlink(out)
    with open(os.path.join(enc, "a.vmsnap"), "rb") as f:
        check(b"quick brown fox" not in f.read(), "no file text in the clear")
    refused(run("cp", os.path.join(enc, "pc.vmsnap"), os.path.join(d, "re.vmsnap"), "--with-parents", "--encrypt", k2,
                "--key", k2, ok=(1,)), [f"is encrypted with key {id1}; pass --key", id2])
    re_ = os.path.join(d, "re")
    os.mkdir(re_)
    p = run("cp", os.path.join(enc, "pc.vmsnap"), os.path.join(re_, "pc.vmsnap"), "--with-parents", "--encrypt", k2,
            "--key", k1)
    check(f"re-encrypted (key {id2}, was key {id1})" in p.stdout, f"cp says it re-encrypted: {p.stdout!r}")
    run("verify", os.path.join(re_, "pc.vmsnap"), "--key", k2)
    refused(run("cp", pc, os.path.join(enc, "pc2.vmsnap"), "--with-parents", "--encrypt", k1, ok=(1,)),
            ["a.vmsnap' exists"])
    check(sorted(os.listdir(enc)) == ["a.vmsnap", "pc.vmsnap"], "a refused cp leaves nothing")
    check(run("cp", pc, os.path.join(enc, "x.vmsnap"), "--cipher", "aes-256-gcm", ok=(2,)).returncode == 2,
          "--cipher without --encrypt: usage error")

    # serve --key, read by qemu-img; writes through qemu-io into an overlay, then committed
    srv = Server(d, e, "--key", k1, "--read-only")
    try:
        out = os.path.join(d, "served.raw")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, out], check=True)
        check(same(out, s.img), "serve --key: qemu-img reads the packed disk")
        os.unlink(out)
    finally:
        srv.stop()
    ovl = os.path.join(d, "ovl")
    srv = Server(d, e, "--key", k1, "--overlay", ovl)
    try:
        subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", srv.uri], check=True,
                       capture_output=True)
    finally:
        srv.stop()
    m = os.path.join(d, "m.vmsnap")
    refused(run("commit", e, ovl, "-o", m, "--keep-overlay", ok=(1,)), [id1, "pass --key"])
    refused(run("commit", e, ovl, "-o", m, "--keep-overlay", "--thin", "--key", k1, "--encrypt", k2, ok=(1,)),
            ["a thin archive uses its parent's key"])
    run("commit", e, ovl, "-o", m, "--keep-overlay", "--key", k1)
    check(json.loads(run("info", m, "--json").stdout)["key_id"] == id1, "commit: sealed with the base's key")
    m2 = os.path.join(d, "m2.vmsnap")
    run("commit", e, ovl, "-o", m2, "--key", k1, "--encrypt", k2)
    check(json.loads(run("info", m2, "--json").stdout)["key_id"] == id2, "commit --encrypt: a thick archive re-keyed")
    out = os.path.join(d, "m2.raw")
    run("extract", m2, "--disk", "0", "-o", out, "--key", k2)
    with open(out, "rb") as f:
        f.seek(1 << 20)
        check(f.read(65536) == b"\xab" * 65536, "the committed write reads back with the new key")


if __name__ == "__main__":
    main(test)
