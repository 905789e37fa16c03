# Sensirion SHT4x (SHT40/41/45) temperature and humidity on I2C. Protocol card: sensors.md A.8.
# 8-bit commands: measure high precision 0xFD (max 8.3 ms), medium 0xF6 (4.5 ms), low 0xE0
# (1.6 ms); soft reset 0x94. Reply: [T_H T_L CRC] [RH_H RH_L CRC], Sensirion CRC-8 per word.
#   T = -45 + 175 * S_T / 65535 C;  RH = -6 + 125 * S_RH / 65535 %, cropped to 0..100 (datasheet)
# The measurement runs between request() and poll(): request() writes the command, poll() reads
# once the conversion time has passed. A read before the result is ready is NACKed by the
# sensor (OSError), which poll() retries until timeout_ms.
# cfg: {"address": 0x44, "precision": "high"|"medium"|"low", "timeout_ms": 100}
# Wire values: temp_c x100, rh_pct x100, computed in integers without bigints on 32-bit ports.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from .. import wire
from ..compat import ticks_diff
from . import checksums

CMD_MEASURE_HIGH = b"\xfd"
CMD_MEASURE_MEDIUM = b"\xf6"
CMD_MEASURE_LOW = b"\xe0"
CMD_SOFT_RESET = b"\x94"
_PRECISION = {"high": (CMD_MEASURE_HIGH, 9), "medium": (CMD_MEASURE_MEDIUM, 5),
              "low": (CMD_MEASURE_LOW, 2)}
_T_MIN_CC = const(-4000)       # specified range -40..125 C, outside: out_of_range
_T_MAX_CC = const(12500)


def temp_centi_c(s):
    """-45 + 175*s/65535 C in hundredths, rounded. 17500*s overflows a 31-bit small int (a heap
    bigint on 32-bit ports), so it is split: 17500*s/65535 = 4*(4375*s)/65535."""
    a = s * 4375
    q = a // 65535
    r = a - q * 65535
    return -4500 + 4 * q + (4 * r + 32767) // 65535


def sht4x_rh_centi_pct(s):
    """-6 + 125*s/65535 % in hundredths, rounded, not cropped (12500*65535 fits 31 bits)."""
    return -600 + (12500 * s + 32767) // 65535


def crc_ok(buf, n):
    """Every 3-byte group of buf[0:n] is a word and its Sensirion CRC-8."""
    for i in range(0, n, 3):
        if checksums.sensirion_crc8(buf, i, i + 2) != buf[i + 2]:
            return False
    return True


class SHT4x:
    """Sensirion SHT4x: temp_c x100 into CH_TEMP, rh_pct x100 into CH_RH."""

    CHANNELS = (wire.CH_TEMP, wire.CH_RH)
    WARMUP_MS = 0

    def __init__(self, i2c, cfg=None):
        cfg = cfg or {}
        self._i2c = i2c
        self.address = cfg.get("address", 0x44)
        self._cmd, self.conversion_ms = _PRECISION[cfg.get("precision", "high")]
        self.timeout_ms = cfg.get("timeout_ms", 100)
        self._buf = bytearray(6)
        self.temp_cc = 0
        self.rh_cp = 0
        self.raw_t = 0
        self.raw_rh = 0
        self._req_t = 0
        self._pending = False
        self._fresh = False
        self._bad = False
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.nacks = 0

    def start(self, now_ms):
        try:
            self._i2c.writeto(self.address, CMD_SOFT_RESET)
        except Exception:
            self.nacks += 1

    def request(self, now_ms):
        self._fresh = False
        self._bad = False
        self._req_t = now_ms
        try:
            self._i2c.writeto(self.address, self._cmd)
            self._pending = True
        except Exception:               # NACK: not there or busy; no_data for this sample
            self.nacks += 1
            self._pending = False
            self.timeouts += 1

    def ready(self):
        return self._fresh or self._bad or not self._pending

    def poll(self, now_ms):
        if not self._pending:
            return 0
        dt = ticks_diff(now_ms, self._req_t)
        if dt < self.conversion_ms:
            return 0
        try:
            self._i2c.readfrom_into(self.address, self._buf)
        except Exception:
            self.nacks += 1
            if dt > self.timeout_ms:
                self._pending = False
                self.timeouts += 1
            return 0
        self._pending = False
        b = self._buf
        if not crc_ok(b, 6):
            self.checksum_errors += 1
            self._bad = True
            return 0
        self.frames_ok += 1
        self.raw_t = (b[0] << 8) | b[1]
        self.raw_rh = (b[3] << 8) | b[4]
        self.temp_cc = temp_centi_c(self.raw_t)
        rh = sht4x_rh_centi_pct(self.raw_rh)
        self.rh_cp = 0 if rh < 0 else (10000 if rh > 10000 else rh)
        self._fresh = True
        return 1

    def fill(self, sample, now_ms):
        if self._pending:
            self.poll(now_ms)
            if self._pending:
                self._pending = False
                self.timeouts += 1
        if self._fresh:
            t = self.temp_cc
            sample.set(wire.CH_TEMP, wire.STATUS_OUT_OF_RANGE if (t < _T_MIN_CC or t > _T_MAX_CC)
                       else wire.STATUS_OK, t)
            sample.set(wire.CH_RH, wire.STATUS_OK, self.rh_cp)
        else:
            st = wire.STATUS_CHECKSUM_ERROR if self._bad else wire.STATUS_NO_DATA
            sample.set(wire.CH_TEMP, st)
            sample.set(wire.CH_RH, st)
