"""`vmsnap serve` stops on SIGTERM even while a client has asked for big reads and never reads the replies: its
workers sit in send() on a full socket, and stop ends them after a grace period instead of waiting for ever.
A client that reads keeps getting its replies while the server stops."""
import signal
import socket
import time

from nbdtest import Client, Server, check, main, make_image, pack

MiB = 1 << 20


def test(wd):
    size = 64 * MiB
    make_image(wd("base.img"), size, [(0, size)])
    arc = pack(wd("base.img"), wd("base.vmsnap"))
    srv = Server(wd, arc, overlay=wd("ovl"))
    stuck = Client(srv.sock)
    stuck.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(4):                       # 4 x 32 MiB: far more than any socket buffer holds
        stuck.request("read", i * 16 * MiB, 32 * MiB, cookie=i + 1)
    good = Client(srv.sock)
    check(len(good.read(0, 4096)) == 4096, "a reading client is served while the other one is stuck")
    time.sleep(1)                            # the workers are now blocked sending to the stuck client
    check(srv.alive(), "server up")
    t0 = time.monotonic()
    rc = srv.stop(signal.SIGTERM)            # waits up to 30 s; before the fix it never returned
    took = time.monotonic() - t0
    check(rc == 0, f"serve exited 0 after SIGTERM with a client that never reads: {rc} {srv.stderr}")
    print(f"ok: serve stopped in {took:.2f} s with a client that never reads its replies")
    # The stuck client's connection is gone: draining it ends in EOF, not in a hang.
    stuck.s.settimeout(30)
    try:
        while stuck.s.recv(1 << 20):
            pass
        ended = True
    except (ConnectionResetError, BrokenPipeError):
        ended = True
    except socket.timeout:
        ended = False
    check(ended, "the stuck client's connection was closed")


main(test)
