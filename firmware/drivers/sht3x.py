# Sensirion SHT3x (SHT30/31/35) temperature and humidity on I2C. Protocol card: sensors.md A.8.
# Single shot, high repeatability, no clock stretching: write 24 00, wait (max 15.5 ms), read 6
# bytes [T_H T_L CRC] [RH_H RH_L CRC]. A read before the conversion is done is NACKed
# (OSError); poll() retries until timeout_ms. Clock stretching (2C 06) is not used: not every
# MicroPython port's I2C tolerates a slave holding SCL for 15 ms.
#   T = -45 + 175 * S_T / 65535 C;  RH = 100 * S_RH / 65535 %
# cfg: {"address": 0x44 (0x45 with ADDR high), "repeatability": "high"|"medium"|"low",
#       "timeout_ms": 100}

from .. import wire
from ..compat import ticks_diff
from .sht4x import crc_ok, temp_centi_c

CMD_SINGLE_HIGH = b"\x24\x00"
CMD_SINGLE_MEDIUM = b"\x24\x0b"
CMD_SINGLE_LOW = b"\x24\x16"
CMD_SOFT_RESET = b"\x30\xa2"
_REPEAT = {"high": (CMD_SINGLE_HIGH, 16), "medium": (CMD_SINGLE_MEDIUM, 7),
           "low": (CMD_SINGLE_LOW, 5)}


def rh_centi_pct(s):
    return (10000 * s + 32767) // 65535


class SHT3x:
    """Sensirion SHT3x: temp_c x100 into CH_TEMP, rh_pct x100 into CH_RH."""

    CHANNELS = (wire.CH_TEMP, wire.CH_RH)
    WARMUP_MS = 0

    def __init__(self, i2c, cfg=None):
        cfg = cfg or {}
        self._i2c = i2c
        self.address = cfg.get("address", 0x44)
        self._cmd, self.conversion_ms = _REPEAT[cfg.get("repeatability", "high")]
        self.timeout_ms = cfg.get("timeout_ms", 100)
        self._buf = bytearray(6)
        self.temp_cc = 0
        self.rh_cp = 0
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
        except Exception:
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
        self.temp_cc = temp_centi_c((b[0] << 8) | b[1])
        self.rh_cp = rh_centi_pct((b[3] << 8) | b[4])
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
            # SHT3x specified -40..125 C; RH 0..100 by construction of the formula
            sample.set(wire.CH_TEMP, wire.STATUS_OUT_OF_RANGE if (t < -4000 or t > 12500)
                       else wire.STATUS_OK, t)
            sample.set(wire.CH_RH, wire.STATUS_OK, self.rh_cp)
        else:
            st = wire.STATUS_CHECKSUM_ERROR if self._bad else wire.STATUS_NO_DATA
            sample.set(wire.CH_TEMP, st)
            sample.set(wire.CH_RH, st)
