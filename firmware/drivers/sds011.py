# Nova Fitness SDS011 (also SDS018/SDS021) laser PM sensor on a UART, 9600 8N1.
# Protocol page: docs/sensors/sds011.md (Laser Dust Sensor Control Protocol V1.3).
#   data frame   AA C0 pm25L pm25H pm10L pm10H idL idH CS AB   (little-endian, ug/m3 x10)
#   set reply    AA C5 cmd d1 d2 d3 idL idH CS AB
#   commands     AA B4 cmd d1..d12 FF FF CS AB (19 bytes), CS = sum(bytes 2..16) & 0xFF
# The box sets query (Q&A) reporting mode at start and sends "query data" per sample; frames of a
# module still in active mode (the power-on default) are decoded as well.
# cfg: {"warmup_ms": 30000, "timeout_ms": 1000, "max_x10": 9999 (0-999.9 ug/m3 range)}
# The wire channels are whole ug/m3; the 0.1 ug/m3 values stay in pm25_x10/pm10_x10.

from ..compat import const
from .. import wire
from . import checksums
from .frames import CHECKSUM, FRAMING, GOOD, SEEN_GOOD, UARTPart

FRAME_LEN = const(10)

# the commands the box sends (sleep and active reporting: docs/sensors/sds011.md)
CMD_WORK = b"\xaa\xb4\x06\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x06\xab"
CMD_QUERY_MODE = b"\xaa\xb4\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x02\xab"
CMD_QUERY = b"\xaa\xb4\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x02\xab"


class SDS011(UARTPart):
    """Nova SDS011. pm25/pm10 ug/m3 into CH_PM25/CH_PM10 (rounded from the 0.1 ug/m3 frame)."""

    CHANNELS = (wire.CH_PM25, wire.CH_PM10)
    WARMUP_MS = 30000

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart_init(uart, cfg, 1000, FRAME_LEN)
        self.max_x10 = cfg.get("max_x10", 9999)
        self.pm25_x10 = 0
        self.pm10_x10 = 0
        self.device_id = 0
        self.framing_errors = 0
        self.acks = 0

    # -- the Nova family's frame parser: AA, C0 (data) or C5 (reply to a command), six bytes, sum8
    # of those six, AB
    def _prefix_ok(self):
        f = self.fbuf
        return f[0] == 0xAA and (self.fpos < 2 or f[1] == 0xC0 or f[1] == 0xC5)

    def _check(self, total):
        f = self.fbuf
        if f[9] != 0xAB:
            return FRAMING
        return GOOD if checksums.nova_sum8(f, 2, 8) == f[8] else CHECKSUM

    # -- request and status ---------------------------------------------------------------------
    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        self._write(CMD_WORK)
        self._write(CMD_QUERY_MODE)

    def request(self, now_ms):
        self._ask(now_ms)
        self._write(CMD_QUERY)

    def fill(self, sample, now_ms):
        st = self._status(now_ms)
        if st == wire.STATUS_OK:
            a = self.pm25_x10
            b = self.pm10_x10
            sample.set(wire.CH_PM25, wire.STATUS_OUT_OF_RANGE if a > self.max_x10 else st,
                       (a + 5) // 10)
            sample.set(wire.CH_PM10, wire.STATUS_OUT_OF_RANGE if b > self.max_x10 else st,
                       (b + 5) // 10)
        else:
            sample.set(wire.CH_PM25, st)
            sample.set(wire.CH_PM10, st)

    def _frame(self, f):
        self.frames_ok += 1
        self.device_id = f[6] | (f[7] << 8)
        if f[1] == 0xC5:
            self.acks += 1
            return 0
        self.pm25_x10 = f[2] | (f[3] << 8)
        self.pm10_x10 = f[4] | (f[5] << 8)
        self.seen |= SEEN_GOOD
        return 1
