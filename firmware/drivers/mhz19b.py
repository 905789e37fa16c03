# Winsen MH-Z19B NDIR CO2 module on a UART, 9600 8N1. Protocol card: sensors.md A.4a.
# Q&A only: read `FF 01 86 00 00 00 00 00 79`, reply `FF 86 HH LL TT SS UU UU CS` with
# CO2 = HH*256+LL ppm and TT = temperature + 40 C (undocumented, ESPHome reads it; kept as
# temp_c for diagnostics, never put into CH_TEMP). Winsen negated-sum checksum.
# cfg: {"range_ppm": 5000,      out_of_range above it (the module's configured range)
#       "set_range": None|2000|5000|10000,  send the 0x99 range command at start
#       "abc": None|True|False, send ABC on/off at start (None: leave the module's setting;
#                               ABC drags readings to 400 ppm when the 24 h minimum is not fresh air)
#       "warmup_ms": 180000, "timeout_ms": 1000}
# Warm-up: 3 min pre-heat (manual; PyPMS PREHEAT = 180); during it the module reports fixed
# values such as 500 or 5000 ppm (strange-v/MHZ19 #18), so the driver's timer, not the value,
# decides. Uncertain: replies to the ABC/range commands are not documented; any other valid
# frame than FF 86 is counted in frames_ok and otherwise ignored.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from .. import wire
from .qauart import QAUART
from ..compat import ticks_diff

_FRAME = const(9)
_RX = const(16)

CMD_READ = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"
CMD_ABC_ON = b"\xff\x01\x79\xa0\x00\x00\x00\x00\xe6"
CMD_ABC_OFF = b"\xff\x01\x79\x00\x00\x00\x00\x00\x86"


def range_command(ppm):
    """0x99 detection-range command (allocates; used once at start)."""
    f = bytearray(b"\xff\x01\x99\x00\x00\x00\x00\x00\x00")
    f[6] = (ppm >> 8) & 0xFF
    f[7] = ppm & 0xFF
    s = 0
    for i in range(1, 8):
        s += f[i]
    f[8] = (0x100 - (s & 0xFF)) & 0xFF
    return bytes(f)


class MHZ19B(QAUART):
    """Winsen MH-Z19B. co2_ppm into wire CH_CO2."""

    CHANNELS = (wire.CH_CO2,)
    WARMUP_MS = 180000

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart = uart
        self.range_ppm = cfg.get("range_ppm", cfg.get("set_range") or 5000)
        self._set_range = cfg.get("set_range")
        self._abc = cfg.get("abc")
        self.WARMUP_MS = cfg.get("warmup_ms", MHZ19B.WARMUP_MS)
        self.timeout_ms = cfg.get("timeout_ms", 1000)
        self._f = bytearray(_FRAME)
        self._p = 0
        self._rx = bytearray(_RX)
        self.co2_ppm = 0
        self.temp_c = 0
        self.status_byte = 0
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

    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        if self._abc is not None:
            self._write(CMD_ABC_ON if self._abc else CMD_ABC_OFF)
        if self._set_range:
            self._write(range_command(self._set_range))

    def request(self, now_ms):
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)            # consume late answers first (a flush that keeps counting)
        self._fresh = False
        self._bad = False
        self._pending = True
        self._req_t = now_ms
        self._write(CMD_READ)

    def ready(self):
        return self._fresh or self._bad

    def fill(self, sample, now_ms):
        if self._pending and not self.ready():
            self._pending = False
            self.timeouts += 1
        if not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS:
            sample.set(wire.CH_CO2, wire.STATUS_WARMING_UP)
        elif self._fresh:
            st = wire.STATUS_OUT_OF_RANGE if self.co2_ppm > self.range_ppm else wire.STATUS_OK
            sample.set(wire.CH_CO2, st, self.co2_ppm)
        elif self._bad:
            sample.set(wire.CH_CO2, wire.STATUS_CHECKSUM_ERROR)
        else:
            sample.set(wire.CH_CO2, wire.STATUS_NO_DATA)

    @staticmethod
    def _b1_ok(b):
        # 0x86 = read reply; the others are the command bytes the module may echo in acks
        return b == 0x86 or b == 0x79 or b == 0x99 or b == 0x87 or b == 0x88

    def _resync(self):
        self._drop(1)
        f = self._f
        while self._p and not (f[0] == 0xFF and (self._p < 2 or self._b1_ok(f[1]))):
            self._drop(1)

    def _byte(self, b):
        f = self._f
        p = self._p
        if p == 0 and b != 0xFF:
            self.bytes_skipped += 1
            return 0
        f[p] = b
        p += 1
        self._p = p
        if p == 2 and not self._b1_ok(b):
            self._resync()
            return 0
        if p < _FRAME:
            return 0
        s = 0
        for i in range(1, _FRAME):
            s += f[i]
        if s & 0xFF:
            self.checksum_errors += 1
            self._bad = True
            self._resync()
            return 0
        self._p = 0
        self.frames_ok += 1
        if f[1] != 0x86:
            return 0
        self.co2_ppm = (f[2] << 8) | f[3]
        self.temp_c = f[4] - 40
        self.status_byte = f[5]
        self._fresh = True
        return 1
