"""Every integer in the box's sample path stays a small integer of a 32-bit MicroPython port.

On an ESP32 or an RP2040 a small integer holds -2^30 .. 2^30 - 1; anything beyond is a heap
object, so a sample path that makes one allocates on every sample (and fails under heap_lock).
The 32-bit lane (tests/test_firmware_mp32.py) catches that where it runs; this guard catches it in
the 64-bit lanes too: the firmware's own modules run here under CPython with a trace function that
inspects every local variable at every line and every return value and object attribute on the
way out of each firmware function, and fails on the first integer outside that range.

The path: NMEA sentences at positions that stress the range (Beijing, +-180 degrees, both poles'
neighbourhoods, all four hemispheres) -> GNSS driver -> Sample with extreme plausible channel
values -> calibration (slopes 0.1 and 10) -> wire.encode_into -> the journal -> wire.decode_into
-> BatchEncoder (catch-up) -> KIND_ACK parsing."""

import sys
from pathlib import Path

import pytest

from envbox.firmware import app as fw_app
from envbox.firmware import wire
from envbox.firmware.drivers.nmea import GNSS
from envbox.simulator.models import gnss as gnss_model

FIRMWARE = str(Path(fw_app.__file__).resolve().parent)
LO, HI = -(1 << 30), (1 << 30) - 1
POSITIONS = [  # (lat, lon) degrees
    (39.8936, 116.4705),      # Shuangjing, Beijing
    (39.8936, 179.9999999),
    (-33.8688, 151.2093),     # Sydney
    (-34.6037, -58.3816),     # Buenos Aires
    (61.2181, -149.9003),     # Anchorage
    (-89.9999999, -179.9999999),
    (89.9999999, 180.0),
    (0.0, 0.0),
    (0.0000001, -0.0000001),
]


class Guard:
    def __init__(self):
        self.bad = []

    def _check(self, where, name, v):
        if type(v) is int and not LO <= v <= HI:
            self.bad.append(f"{where}: {name} = {v}")
        elif type(v) in (list, tuple) and len(v) <= 64:
            for i, x in enumerate(v):
                if type(x) is int and not LO <= x <= HI:
                    self.bad.append(f"{where}: {name}[{i}] = {x}")

    def trace(self, frame, event, arg):
        if not frame.f_code.co_filename.startswith(FIRMWARE):
            return None
        # host-only helpers that build the whole longitude on purpose, module import, and the
        # host-side decoder (the box never loads wiredecode.py)
        if frame.f_code.co_name in ("_get_lon", "_set_lon", "<lambda>", "<module>") \
                or frame.f_code.co_filename.endswith("wiredecode.py"):
            return None
        return self.local

    def local(self, frame, event, arg):
        where = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
        for k, v in frame.f_locals.items():
            if k == "self" and event == "return":
                for a, x in vars(v).items() if hasattr(v, "__dict__") else ():
                    self._check(where, "self." + a, x)
            else:
                self._check(where, k, v)
        if event == "return":
            self._check(where, "return", arg)
        return self.local

    def run(self, fn):
        sys.settrace(self.trace)
        try:
            fn()
        finally:
            sys.settrace(None)
        return self.bad


def _nmea(lat, lon, t):
    """RMC + GGA of one second at (lat, lon), as the simulator's receiver model writes them."""
    hh, mm, ss = t // 3600 % 24, t // 60 % 60, t % 60
    la, lah = gnss_model.format_coord(lat, False)
    lo, loh = gnss_model.format_coord(lon, True)
    tod = "%02d%02d%02d.00" % (hh, mm, ss)
    rmc = gnss_model.sentence(f"GPRMC,{tod},A,{la},{lah},{lo},{loh},27.5,273.4,031226,,,A")
    gga = gnss_model.sentence(f"GPGGA,{tod},{la},{lah},{lo},{loh},1,12,0.8,4848.9,M,-8.6,M,,")
    return (rmc + gga).encode()


def _sample_path():
    g = GNSS(None)
    cfg = fw_app.Applied({"version": 1, "period_s": 10, "channels": None,
                          "cal": {"n03_per_dl": {"offset": 0, "slope": 10},
                                  "pm25_ugm3": {"offset": -100, "slope": 0.1},
                                  "temp_c": {"offset": -50, "slope": 9.99}}})
    s = wire.Sample(b"sj-001")
    buf = bytearray(wire.MAX_SAMPLE_BYTES)
    bbuf = bytearray(4096)
    enc = wire.BatchEncoder(bbuf, 10)
    back = wire.Sample(b"sj-001")
    day0 = (2026 - 2020) * 365 * 86400     # the same order as a real date
    for k, (lat, lon) in enumerate(POSITIONS):
        for c in _nmea(lat, lon, 10 * k):       # what the driver's poll() does per byte
            v = g.push(c)
            if v:
                g.take(v)
        t = g.fix_t_s2020
        assert g.fill(s, t), (lat, lon)
        s.seq = 1_000_000 + k
        s.t_s2020 = day0 + t
        s.flags = wire.FLAG_CLOCK_FROM_GPS
        s.clear_channels()
        s.set(wire.CH_PM25, wire.STATUS_OK, 1000)
        s.set(wire.CH_N03, wire.STATUS_OK, 65535)
        s.set(wire.CH_TEMP, wire.STATUS_OK, -4000 if k % 2 else 12500)
        s.set(wire.CH_NOISE, wire.STATUS_OUT_OF_RANGE, 1400)
        cfg.apply(s)
        n = wire.encode_into(buf, s)
        wire.decode_into(back, buf, n)
        if k == 0:
            enc.begin(back)
        enc.add(back)
    enc.finish()
    lo = [0] * wire.MAX_ACK_RANGES
    hi = [0] * wire.MAX_ACK_RANGES
    ack = ACK
    assert wire.decode_ack_into(ack, len(ack), lo, hi) == 2
    return bytes(bbuf[:enc.p])


ACK = wire.encode_ack([(5, 10), (1_000_000, 1_073_741_823)])   # the gateway's side, untraced


def test_the_guard_sees_a_big_integer():
    # itself must be able to fail: a plain varint of a longitude x1e7 (its zig-zag doubles it)
    bad = Guard().run(lambda: wire._put_varint(bytearray(8), 0, 1_164_705_000))
    assert bad and "1164705000" in bad[0]


def test_sample_path_stays_in_32bit_small_integers():
    bad = Guard().run(_sample_path)
    assert not bad, "\n".join(bad[:20])


def test_the_sample_path_is_right_as_well():
    # what passed the guard still encodes the same bytes as the host's whole-integer arithmetic
    payload = _sample_path()
    got = wire.decode_many(payload)
    assert [(round(d["gps"]["lat_e7"] / 1e7, 5), round(d["gps"]["lon_e7"] / 1e7, 5))
            for d in got] == [(round(a, 5), round(b if b < 180 else 180.0, 5))
                              for a, b in POSITIONS]
    assert got[0]["channels"]["n03_per_dl"]["raw"] == 655350
    assert got[0]["channels"]["pm25_ugm3"]["raw"] == 0     # 1000 * 0.1 - 100
