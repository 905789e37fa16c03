# The Sensirion I2C family (SHT3x, SHT4x, SCD4x): every reply is 16-bit big-endian words, each
# followed by its CRC-8 (poly 0x31, init 0xFF). Protocol pages: docs/sensors/sht4x.md, sht3x.md,
# scd4x.md.
#
# words_verdict() is the family's frame parser (a reply is complete when the read returns, so
# there is nothing to assemble); word() reads word i of a reply; temp_centi_c() is the
# temperature formula the three share. SHT is the single-shot temperature/humidity driver of
# SHT3x and SHT4x: measure command, wait the conversion time, read 6 bytes; a read before the
# result is ready is NACKed by the sensor (OSError), which poll() retries until timeout_ms.
# All integer arithmetic, no allocation.

from ..compat import const, ticks_diff
from .. import wire
from . import checksums
from .frames import CHECKSUM, GOOD, SEEN_BAD, SEEN_GOOD, status

_T_MIN_CC = const(-4000)       # specified range -40..125 C, outside: out_of_range
_T_MAX_CC = const(12500)


def words_verdict(buf, n):
    """GOOD if every 3-byte group of buf[0:n] is a word and its CRC-8, else CHECKSUM."""
    for i in range(0, n, 3):
        if checksums.sensirion_crc8(buf, i, i + 2) != buf[i + 2]:
            return CHECKSUM
    return GOOD


def take(drv, buf, n):
    """The verdict on a reply of n bytes, counted in the driver (frames_ok, or checksum_errors
    and its SEEN_BAD): True for a good reply."""
    if words_verdict(buf, n) != GOOD:
        drv.checksum_errors += 1
        drv.seen |= SEEN_BAD
        return False
    drv.frames_ok += 1
    return True


def word(buf, i):
    """Word i of a reply (groups of word + CRC)."""
    return (buf[3 * i] << 8) | buf[3 * i + 1]


def temp_centi_c(s):
    """-45 + 175*s/65535 C in hundredths, rounded. 17500*s overflows a 31-bit small int (a heap
    bigint on 32-bit ports), so it is split: 17500*s/65535 = 4*(4375*s)/65535."""
    a = s * 4375
    q = a // 65535
    r = a - q * 65535
    return -4500 + 4 * q + (4 * r + 32767) // 65535


def rh_centi_pct(s):
    """100*s/65535 % in hundredths, rounded (SHT3x, SCD4x)."""
    return (10000 * s + 32767) // 65535


class SHT:
    """A Sensirion single-shot T/RH sensor: temp_c x100 into CH_TEMP, rh_pct x100 into CH_RH.
    A part gives its soft-reset command, its measure command with the ms to wait before reading
    the result, and its RH formula rh_off + rh_span * S / 65535 in hundredths of a percent
    (rounded, cropped to 0..100 %). cfg: {"address": 0x44, "timeout_ms": 100} and the part's."""

    CHANNELS = (wire.CH_TEMP, wire.CH_RH)
    WARMUP_MS = 0

    def __init__(self, i2c, cfg, reset, measure, rh_off, rh_span):
        self._i2c = i2c
        self.address = cfg.get("address", 0x44)
        self._reset = reset
        self._cmd, self.conversion_ms = measure
        self._rh_off = rh_off
        self._rh_span = rh_span
        self.timeout_ms = cfg.get("timeout_ms", 100)
        self._buf = bytearray(6)
        self.temp_cc = 0
        self.rh_cp = 0
        self.raw_t = 0
        self.raw_rh = 0
        self._req_t = 0
        self._pending = False
        self.seen = 0
        self.frames_ok = self.checksum_errors = self.bytes_skipped = self.timeouts = 0
        self.nacks = 0

    def start(self, now_ms):
        try:
            self._i2c.writeto(self.address, self._reset)
        except Exception:
            self.nacks += 1

    def request(self, now_ms):
        self.seen = 0
        self._req_t = now_ms
        try:
            self._i2c.writeto(self.address, self._cmd)
            self._pending = True
        except Exception:               # NACK: not there or busy; no_data for this sample
            self.nacks += 1
            self._pending = False
            self.timeouts += 1

    def ready(self):
        return self.seen != 0 or not self._pending

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
        if not take(self, b, 6):
            return 0
        self.raw_t = word(b, 0)
        self.raw_rh = word(b, 1)
        self.temp_cc = temp_centi_c(self.raw_t)
        # rh_span * 65535 fits 31 bits: no bigint on 32-bit ports
        rh = self._rh_off + (self._rh_span * self.raw_rh + 32767) // 65535
        self.rh_cp = 0 if rh < 0 else (10000 if rh > 10000 else rh)
        self.seen |= SEEN_GOOD
        return 1

    def fill(self, sample, now_ms):
        if self._pending:
            self.poll(now_ms)
            if self._pending:
                self._pending = False
                self.timeouts += 1
        st = status(self.seen, False)
        if st == wire.STATUS_OK:
            t = self.temp_cc
            sample.set(wire.CH_TEMP, wire.STATUS_OUT_OF_RANGE if (t < _T_MIN_CC or t > _T_MAX_CC)
                       else st, t)
            sample.set(wire.CH_RH, st, self.rh_cp)
        else:
            sample.set(wire.CH_TEMP, st)
            sample.set(wire.CH_RH, st)
