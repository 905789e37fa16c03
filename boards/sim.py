# Board `sim`: the MicroPython Unix port wired to the simulator (simulator/run.py).
#
# The simulator writes sim.json (docs/contracts.md): the virtual clock (t0, warp), the
# pseudo-terminal of each serial module and the I2C bridge socket. This board turns those into
# the same objects a real board has: UARTs with machine.UART's non-blocking read API, a tick
# counter (virtual milliseconds), and the broker address (ENVBOX_BROKER=host:port).
#
# Environment: ENVBOX_SIM_JSON (path of sim.json, required), ENVBOX_BROKER (default
# 127.0.0.1:1883), ENVBOX_DEVICE (overrides sim.json's device id).

import json
import os
import time

import termios

from firmware.drivers.nmea import GNSS
from firmware.drivers.pms5003 import PMS5003

NAME = "sim"
_TICKS_MASK = (1 << 30) - 1


class PtyUART:
    """A pseudo-terminal opened like a UART: raw, non-blocking reads (VMIN=0, VTIME=0)."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][6] = 0   # VMIN: return at once with what is there
        a[6][5] = 0   # VTIME: no inter-byte timer
        termios.tcsetattr(fd, termios.TCSANOW, a)

    def any(self):
        # A pty cannot say how many bytes wait without allocating (select.poll returns a list);
        # claim "maybe" and let readinto() answer 0. Drivers stop reading on a 0.
        return 1

    def readinto(self, buf, nbytes=None):
        try:
            return self._f.readinto(buf, len(buf) if nbytes is None else nbytes)
        except OSError:
            return 0

    def write(self, data):
        return self._f.write(data)


class Board:
    NAME = NAME

    def __init__(self, sim_json=None):
        path = sim_json or os.getenv("ENVBOX_SIM_JSON")
        if not path:
            raise OSError("ENVBOX_SIM_JSON is not set (path of the simulator's sim.json)")
        with open(path) as f:
            cfg = json.load(f)
        self.cfg = cfg
        warp = float(cfg.get("warp", 1.0))
        self.warp = warp
        self._warp_milli = int(warp * 1000 + 0.5)
        self._t0_wall_us = int(float(cfg["t0_wall_s"]) * 1000000)
        dev = os.getenv("ENVBOX_DEVICE") or cfg.get("device") or "sim-001"
        self.device_id = dev.encode()
        broker = os.getenv("ENVBOX_BROKER") or cfg.get("broker") or "127.0.0.1:1883"
        host, _, port = broker.rpartition(":")
        self.broker_host = host or "127.0.0.1"
        self.broker_port = int(port)
        self.mqtt_user = None
        self.mqtt_password = None
        self.mqtt_ssl = None
        self.keepalive_s = 30
        self.connect_timeout_ms = 5000
        self.backoff_min_ms = 200
        self.backoff_max_ms = 5000
        self.max_inflight = 20
        self.drain_timeout_ms = 30000
        self.period_s = 10
        self.outbox_slots = 64        # RAM queue of unacknowledged samples (about 13 KB)
        # wall-time poll interval; virtual waits are scaled so that scheduling latency of the
        # host (not warped) never eats a sensor's answer window
        self.poll_ms = 3
        self.answer_timeout_ms = self._v(max(1000, int(150 * warp)), 5000)
        self.fix_wait_ms = self._v(max(1500, int(150 * warp)), 5000)
        run_until = cfg.get("run_until_virtual_s")
        self.run_until_s2020 = None if run_until is None else int(run_until) - 1577836800
        serial = cfg.get("serial", {})
        self.gnss = GNSS(PtyUART(serial["gnss"]))
        self.sensors = []
        if "pms5003" in serial:
            self.sensors.append(PMS5003(PtyUART(serial["pms5003"])))

    @staticmethod
    def _v(ms, cap):
        return ms if ms < cap else cap

    def ticks_ms(self):
        """Virtual milliseconds since the simulation's t0, masked like time.ticks_ms()."""
        w = time.time_ns() // 1000 - self._t0_wall_us
        return (w * self._warp_milli // 1000000) & _TICKS_MASK

    def wall_ms(self):
        return time.ticks_ms()

    def log(self, msg):
        print("[%s %d] %s" % (NAME, self.ticks_ms() // 1000, msg))


def make():
    return Board()
