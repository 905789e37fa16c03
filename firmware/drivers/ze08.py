# Winsen ZE08-CH2O formaldehyde module on a UART, 9600 8N1. Protocol card: sensors.md A.6.
# 9-byte frames, byte 0 = 0xFF, Winsen negated-sum checksum; the ZE07/08/25 command dialect
# (mode switch 78 41 = Q&A, 78 40 = active upload; not ZE03's 78 04/03).
#   active upload  FF 17 04 00 ppbH ppbL rangeH rangeL CS   (0x17 = CH2O, 0x04 = unit ppb, decimals 0)
#   Q&A reply      FF 86 ugH ugL 00 00 ppbH ppbL CS          (ZE07-CH2O manual table 8)
# The box uses Q&A mode; active-upload frames (the power-on default, so a module that rebooted)
# are decoded too and the Q&A command is sent again on the next request.
# cfg: {"range_ppb": 5000, "warmup_ms": 180000, "timeout_ms": 1000, "mode": "qa"|"active"}
# Uncertain in public sources: the warm-up (the card says "minutes"; default 180 s); whether the
# Q&A reply's ppb word can carry decimals (we read it as whole ppb, as the manual's example does).
# An active frame with another unit code than 0x04 is sensor_error rather than a guessed scale.

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
_GAS_CH2O = const(0x17)
_UNIT_PPB = const(0x04)

CMD_QA_MODE = b"\xff\x01\x78\x41\x00\x00\x00\x00\x46"
CMD_ACTIVE_MODE = b"\xff\x01\x78\x40\x00\x00\x00\x00\x47"
CMD_READ = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"
_POW10 = (1, 10, 100, 1000)


class ZE08(QAUART):
    """Winsen ZE08-CH2O. hcho_ppb (wire CH_HCHO, x1); hcho_ugm3 kept from Q&A replies."""

    CHANNELS = (wire.CH_HCHO,)
    WARMUP_MS = 180000

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart = uart
        self.range_ppb = cfg.get("range_ppb", 5000)
        self.WARMUP_MS = cfg.get("warmup_ms", ZE08.WARMUP_MS)
        self.timeout_ms = cfg.get("timeout_ms", 1000)
        self.qa = cfg.get("mode", "qa") == "qa"
        self._f = bytearray(_FRAME)
        self._p = 0
        self._rx = bytearray(_RX)
        self.hcho_ppb = 0
        self.hcho_ugm3 = 0
        self.full_range_ppb = 0
        self._t0 = 0
        self._started = False
        self._req_t = 0
        self._pending = False
        self._fresh = False
        self._bad = False
        self._fault = False
        self._active_seen = False
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.mode_resends = 0

    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        self._write(CMD_QA_MODE if self.qa else CMD_ACTIVE_MODE)

    def request(self, now_ms):
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)            # consume what is already there (a flush that keeps counting)
        self._fresh = False
        self._bad = False
        self._fault = False
        self._pending = True
        self._req_t = now_ms
        if self.qa:
            if self._active_seen:
                self._active_seen = False
                self.mode_resends += 1
                self._write(CMD_QA_MODE)
            self._write(CMD_READ)

    def ready(self):
        return self._fresh or self._bad or self._fault

    def fill(self, sample, now_ms):
        if self._pending and not self.ready():
            self._pending = False
            self.timeouts += 1
        if not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS:
            sample.set(wire.CH_HCHO, wire.STATUS_WARMING_UP)
        elif self._fresh:
            st = wire.STATUS_OUT_OF_RANGE if self.hcho_ppb > self.range_ppb else wire.STATUS_OK
            sample.set(wire.CH_HCHO, st, self.hcho_ppb)
        elif self._fault:
            sample.set(wire.CH_HCHO, wire.STATUS_SENSOR_ERROR)
        elif self._bad:
            sample.set(wire.CH_HCHO, wire.STATUS_CHECKSUM_ERROR)
        else:
            sample.set(wire.CH_HCHO, wire.STATUS_NO_DATA)

    def _resync(self):
        self._drop(1)
        f = self._f
        while self._p and not (f[0] == 0xFF and (self._p < 2 or f[1] == 0x86 or f[1] == _GAS_CH2O)):
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
        if p == 2 and b != 0x86 and b != _GAS_CH2O:
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
        if f[1] == 0x86:
            self.hcho_ugm3 = (f[2] << 8) | f[3]
            self.hcho_ppb = (f[6] << 8) | f[7]
        else:
            dec = f[3]
            if f[2] != _UNIT_PPB or dec > 3:
                self._fault = True
                return 0
            self._active_seen = self.qa
            den = _POW10[dec]
            self.hcho_ppb = (((f[4] << 8) | f[5]) + den // 2) // den
            self.full_range_ppb = (f[6] << 8) | f[7]
        self._fresh = True
        return 1
