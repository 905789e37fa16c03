"""simulator/pty.py: serving survives model bugs, and unread output is lost like a UART's."""

import os
import select
import time

from envbox.servers import eventually
from envbox.simulator.clock import VirtualClock
from envbox.simulator.models import SerialModel
from envbox.simulator.models.gnss import GNSS
from envbox.simulator.pty import PtyServer, open_raw
from envbox.simulator.world import World

T0 = 1_764_300_000


class Echo(SerialModel):
    """Echoes input a virtual second later; raises on the byte 0xEE (a model bug)."""
    name = "echo"

    def receive(self, data, t):
        if 0xEE in data:
            raise RuntimeError("boom")
        self.emit(t + 1.0, data)


def _read_avail(fd):
    out = b""
    while select.select([fd], [], [], 0.05)[0]:
        out += os.read(fd, 65536)
    return out


def test_model_exception_is_counted_and_serving_goes_on():
    clock = VirtualClock(T0, warp=100)
    srv = PtyServer(Echo(), clock).start()
    try:
        fd = open_raw(srv.path)
        os.write(fd, b"\xee")
        eventually(lambda: srv.counters["model_errors"] == 1, timeout=5, what="model error counted")
        os.write(fd, b"hello")
        got = bytearray()
        eventually(lambda: got.extend(_read_avail(fd)) or got == b"hello", timeout=5, what="echo")
        assert "boom" in srv.status()["last_error"]
        os.close(fd)
    finally:
        srv.stop()


def test_unread_output_is_dropped_not_hoarded():
    clock = VirtualClock(T0, warp=3000)      # about 400 KiB of NMEA a wall second
    srv = PtyServer(GNSS(World(T0), None, max_backlog_s=1e9), clock).start()
    try:
        eventually(lambda: srv.counters["overruns"] >= 10, timeout=10, what="overruns")
        fd = open_raw(srv.path)
        # the read is non-blocking, as the firmware's, and the server may flush a full buffer
        # (an overrun) between the poll and the read, so read until an RMC's time is in
        head = ""
        now = clock.now()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            k = head.find("$GPRMC,")
            if k >= 0 and len(head) >= k + 13:
                break
            select.select([fd], [], [], 0.5)
            try:
                head += os.read(fd, 4096).decode("ascii", "replace")
            except BlockingIOError:
                pass
        i = head.index("$GPRMC,")
        hh, mm, ss = (int(head[i + 7 + k:i + 9 + k]) for k in (0, 2, 4))
        age_s = (now - (hh * 3600 + mm * 60 + ss)) % 86400
        # A late reader finds at most one pty buffer of old sentences (about 17 KiB, two virtual
        # minutes of NMEA), not everything since nobody read.
        assert now - T0 > 1000
        assert age_s < 200
        os.close(fd)
    finally:
        srv.stop()
