# Nova Fitness SDS011 (also SDS018/SDS021) laser PM sensor on a UART, 9600 8N1.
# Protocol card: sensors.md A.2 (Laser Dust Sensor Control Protocol V1.3).
#   data frame   AA C0 pm25L pm25H pm10L pm10H idL idH CS AB   (little-endian, ug/m3 x10)
#   set reply    AA C5 cmd d1 d2 d3 idL idH CS AB
#   commands     AA B4 cmd d1..d12 FF FF CS AB (19 bytes), CS = sum(bytes 2..16) & 0xFF
# The box sets query (Q&A) reporting mode at start and sends "query data" per sample; frames of a
# module still in active mode (the power-on default) are decoded as well.
# cfg: {"warmup_ms": 30000, "timeout_ms": 1000, "max_x10": 9999 (0-999.9 ug/m3 range)}
# Warm-up: airrohr wakes the sensor 15 s before reading, the card says 15-30 s; default 30 s.
# The wire channels are whole ug/m3; the 0.1 ug/m3 values stay in pm25_x10/pm10_x10.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from .. import wire
from .qauart import QAUART
from ..compat import ticks_diff

_FRAME = const(10)
_RX = const(16)

CMD_WORK = b"\xaa\xb4\x06\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x06\xab"
CMD_SLEEP = b"\xaa\xb4\x06\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x05\xab"
CMD_QUERY_MODE = b"\xaa\xb4\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x02\xab"
CMD_ACTIVE_MODE = b"\xaa\xb4\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x01\xab"
CMD_QUERY = b"\xaa\xb4\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x02\xab"


class SDS011(QAUART):
    """Nova SDS011. pm25/pm10 ug/m3 into CH_PM25/CH_PM10 (rounded from the 0.1 ug/m3 frame)."""

    CHANNELS = (wire.CH_PM25, wire.CH_PM10)
    WARMUP_MS = 30000

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart = uart
        self.WARMUP_MS = cfg.get("warmup_ms", SDS011.WARMUP_MS)
        self.timeout_ms = cfg.get("timeout_ms", 1000)
        self.max_x10 = cfg.get("max_x10", 9999)
        self._f = bytearray(_FRAME)
        self._p = 0
        self._rx = bytearray(_RX)
        self.pm25_x10 = 0
        self.pm10_x10 = 0
        self.device_id = 0
        self._t0 = 0
        self._started = False
        self._req_t = 0
        self._pending = False
        self._fresh = False
        self._bad = False
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.framing_errors = 0
        self.acks = 0

    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        self._write(CMD_WORK)
        self._write(CMD_QUERY_MODE)

    def request(self, now_ms):
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)
        self._fresh = False
        self._bad = False
        self._pending = True
        self._req_t = now_ms
        self._write(CMD_QUERY)

    def ready(self):
        return self._fresh or self._bad

    def fill(self, sample, now_ms):
        if self._pending and not self.ready():
            self._pending = False
            self.timeouts += 1
        if not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS:
            sample.set(wire.CH_PM25, wire.STATUS_WARMING_UP)
            sample.set(wire.CH_PM10, wire.STATUS_WARMING_UP)
        elif self._fresh:
            a = self.pm25_x10
            b = self.pm10_x10
            sample.set(wire.CH_PM25, wire.STATUS_OUT_OF_RANGE if a > self.max_x10 else wire.STATUS_OK,
                       (a + 5) // 10)
            sample.set(wire.CH_PM10, wire.STATUS_OUT_OF_RANGE if b > self.max_x10 else wire.STATUS_OK,
                       (b + 5) // 10)
        else:
            st = wire.STATUS_CHECKSUM_ERROR if self._bad else wire.STATUS_NO_DATA
            sample.set(wire.CH_PM25, st)
            sample.set(wire.CH_PM10, st)

    def _resync(self):
        self._drop(1)
        f = self._f
        while self._p and not (f[0] == 0xAA and (self._p < 2 or f[1] == 0xC0 or f[1] == 0xC5)):
            self._drop(1)

    def _byte(self, b):
        f = self._f
        p = self._p
        if p == 0 and b != 0xAA:
            self.bytes_skipped += 1
            return 0
        f[p] = b
        p += 1
        self._p = p
        if p == 2 and b != 0xC0 and b != 0xC5:
            self._resync()
            return 0
        if p < _FRAME:
            return 0
        if f[9] != 0xAB:
            self.framing_errors += 1
            self._resync()
            return 0
        s = 0
        for i in range(2, 8):
            s += f[i]
        if (s & 0xFF) != f[8]:
            self.checksum_errors += 1
            self._bad = True
            self._resync()
            return 0
        self._p = 0
        self.frames_ok += 1
        self.device_id = f[6] | (f[7] << 8)
        if f[1] == 0xC5:
            self.acks += 1
            return 0
        self.pm25_x10 = f[2] | (f[3] << 8)
        self.pm10_x10 = f[4] | (f[5] << 8)
        self._fresh = True
        return 1
