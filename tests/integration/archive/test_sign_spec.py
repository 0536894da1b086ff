#!/usr/bin/env python3
"""docs/FORMAT.md "Signatures" read as a second implementation would: for a `vmsnap sign`ed archive, Python's
hashlib builds the key id, the chunk table (ARCHIVE.sums, BLAKE2b-256 per 256 KiB chunk), its BLAKE2b-512 digest
and the 249-byte version-2 signed message from the document alone, and OpenSSL (an independent Ed25519) verifies
the signature over it; a message built from a changed header does not verify. Skipped (exit 77) when this OpenSSL
has no raw Ed25519 verification."""
import base64
import hashlib
import os
import struct
import subprocess
import sys

from archivetest import check, main, run

SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")   # DER prefix of an Ed25519 public key (RFC 8410)


def openssl_verify(d, pk, msg, sig):
    paths = [os.path.join(d, n) for n in ("pk.der", "msg", "sig")]
    for p, b in zip(paths, (SPKI_ED25519 + pk, msg, sig)):
        with open(p, "wb") as f:
            f.write(b)
    p = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths[0], "-keyform", "DER", "-rawin",
                        "-in", paths[1], "-sigfile", paths[2]], capture_output=True, text=True)
    return p.returncode == 0, p.stdout + p.stderr


def test(d):
    disk = os.path.join(d, "disk.raw")
    with open(disk, "wb") as f:
        f.write(os.urandom(700000))
    arc = os.path.join(d, "a.vmsnap")
    run("pack", disk, "-o", arc, "--quiet")
    key = os.path.join(d, "k")
    run("keygen", "--sign", "-o", key)
    run("sign", arc, "--key", key)

    with open(key + ".pub") as f:
        tag, b64 = f.read().rstrip("\n").split(" ")
    check(tag == "vmsnap-sign-public-1", f"public key file tag {tag}")
    pk = base64.b64decode(b64, validate=True)
    with open(arc + ".sig") as f:
        text = f.read()
    lines = text.split("\n")
    check(len(lines) == 2 and lines[1] == "", "one line, newline-terminated")
    line = lines[0]
    check(len(line) == 300, f"a line is 300 characters ({len(line)})")
    t, keyid, rec64 = line.split(" ")
    rec = base64.b64decode(rec64, validate=True)
    check(t == "vmsnap-signature-2" and len(rec) == 196, "tag and a 196-byte record")
    want_id = hashlib.blake2b(b"vmsnap key id 1\0" + b"vmsnap-sign-public-1\0" + pk, digest_size=16).hexdigest()[:16]
    check(keyid == want_id, f"KEYID {keyid} is the documented id {want_id}")

    data = open(arc, "rb").read()
    chunk = 256 << 10
    count = -(-len(data) // chunk)
    sums = (b"VMSNSUMS" + struct.pack("<IIQQ", 1, 18, len(data), count) + data[32:48] +
            b"".join(hashlib.blake2b(data[i:i + chunk], digest_size=32).digest() for i in range(0, len(data), chunk)))
    check(open(arc + ".sums", "rb").read() == sums, f"{arc}.sums is the documented table of {count} chunks")
    digest = hashlib.blake2b(sums).digest()
    check(rec[:32] == pk, "record: public key")
    check(rec[32:48] == data[32:48], "record: the header's UUID")
    check(struct.unpack("<QIQ", rec[48:68]) == (len(data), chunk, count), "record: file size, chunk size and count")
    check(rec[68:132] == digest, "record: BLAKE2b-512 of the .sums file")

    def message(header):
        return (b"vmsnap archive signature\0" + struct.pack("<II", 2, 128) + header +
                struct.pack("<QIQI", len(data), chunk, count, 64) + digest)

    msg = message(data[:128])
    check(len(msg) == 249, "the message is 249 bytes")
    ok, out = openssl_verify(d, pk, msg, rec[132:])
    if not ok and ("rawin" in out or "not supported" in out.lower() or "unknown option" in out.lower()):
        print(f"SKIP: openssl cannot verify raw Ed25519 here: {out.strip()}")
        sys.exit(77)
    check(ok, f"OpenSSL verifies the signature over the documented message: {out.strip()}")
    other = bytearray(data[:128])
    other[64] ^= 1
    ok, _ = openssl_verify(d, pk, message(bytes(other)), rec[132:])
    check(not ok, "a message with another header does not verify")


main(test)
