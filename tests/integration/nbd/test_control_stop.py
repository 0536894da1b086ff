"""The control socket never holds the server up: a client that keeps a request line open (trickling blanks, no
newline) does not stop `vmsnap serve` from exiting on SIGTERM, and a normal client is served after it leaves."""
import socket
import threading
import time

from nbdtest import Server, Workdir, check, make_image, pack


def main():
    wd = Workdir()
    try:
        make_image(wd("base.img"), 1 << 20, [(0, 65536)])
        arc = pack(wd("base.img"), wd("base.vmsnap"))
        srv = Server(wd, arc, overlay=wd("ovl"), control=True)
        check(srv.ctl({"cmd": "status"})["ok"], "control answers")
        slow = socket.socket(socket.AF_UNIX)
        slow.connect(srv.control)
        stop = threading.Event()

        def trickle():   # JSON whitespace, one byte a second, never a newline
            while not stop.is_set():
                try:
                    slow.sendall(b" ")
                except OSError:
                    return
                time.sleep(1)
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(2)
        check(srv.alive(), "server up with the slow client connected")
        rc = srv.stop()   # waits up to 30 s; a server stuck on the client's line never exits
        stop.set()
        check(rc == 0, f"serve exited 0 after SIGTERM with a client holding the control line: {rc} {srv.stderr}")
        print("ok: serve stopped with a control client that never finished its line")
    finally:
        wd.cleanup()


main()
