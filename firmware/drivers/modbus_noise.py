# RS485 Modbus RTU sound-level transmitter (Renke RS-ZS-N01 style). Protocol card: sensors.md A.7.
#   request   [addr] [func 03|04] [regH] [regL] 00 01 [crcL] [crcH]
#   reply     [addr] [func] 02 [valH] [valL] [crcL] [crcH]       level dB(A) = value / scale_div
#   exception [addr] [func|0x80] [code] [crcL] [crcH]
# cfg: {"address": 1, "function": 3, "register": 0, "scale_div": 10, "baud": 4800 (for the
#       board; Renke default 4800, others 9600), "poll_ms": 1000, "timeout_ms": 500,
#       "min_dba": 30, "max_dba": 130}
# A reply that arrives after its query timed out is still used (Modbus RTU has no transaction
# id; with one register polled every reply is a level of that register); the timeout is counted.
# Vendors differ on baud (4800/9600), register (0x0000, GEMHO 0x000E), function (03/04) and
# scale; all are cfg, nothing is guessed at run time. (Probing bauds at boot is the board's job.)
#
# Metrology: the transmitter gives a fast instantaneous A-weighted level. The driver polls it
# every poll_ms on its own (from poll(); request() only marks the sample time) and reports per
# sampling window LAeq = 10*log10(mean(10^(L/10))) into CH_NOISE, plus LAmin/LAmax.
# Allocation-free energy average: floats are heap objects on most MicroPython ports, and the
# energy sum 10^(L/10) overflows small ints, so the sum is kept in the log domain in integer
# units of 0.0001 dB ("e4"): S <- max(S, L) + T(|S - L|) with T(d) = 10*log10(1 + 10^(-d/10))
# from a 501-entry table (0..50 dB in 0.1 dB steps, linear interpolation; beyond 50 dB the
# correction is < 0.0001 dB). LAeq = S - 10*log10(n), 10*log10(n) from a 512-entry table
# (interpolated above). Largest value ~1.5e6: a small int on every port. The error against the
# float formula is measured by tests/test_models_modbus_noise.py (about 0.001 dB per 100 polls).

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

import array
import math

from .. import wire
from ..compat import ticks_diff
from . import checksums

_MAXF = const(7)
_RX = const(16)
_MAX_READS = const(8)
_TSTEP = const(1000)           # log-add table step: 0.1 dB in e4 dB units
_TMAX = const(500000)          # log-add table span: 50 dB
_LOG2_E4 = const(30103)        # 10*log10(2) dB in e4 dB units


def _table_logadd():
    t = array.array("H")          # appended, not built from a list: no 4 KB temporary list
    for i in range(501):
        t.append(int(100000.0 * math.log10(1.0 + 10.0 ** (-i / 100.0)) + 0.5))
    return t


def _table_log_n():
    t = array.array("i", (0,))
    for n in range(1, 513):
        t.append(int(100000.0 * math.log10(n) + 0.5))
    return t


# Built once at import (floats are fine here, not in the hot path).
_T = _table_logadd()
_LOGN = _table_log_n()


def logadd_e4(a, b):
    """10*log10(10^(a/10) + 10^(b/10)) for levels in integer units of 0.0001 dB; integers only."""
    if a < b:
        a, b = b, a
    d = a - b
    if d >= _TMAX:
        return a
    i = d // _TSTEP
    r = d - i * _TSTEP
    t0 = _T[i]
    return a + t0 + ((_T[i + 1] - t0) * r + 500) // _TSTEP


def log_n_e4(n):
    """10*log10(n) in units of 0.0001 dB, n >= 1 (table up to 512, interpolated above)."""
    if n <= 512:
        return _LOGN[n]
    k = 0
    m = n
    while m >= 512:
        m >>= 1
        k += 1
    rem = n - (m << k)
    t0 = _LOGN[m]
    return t0 + (((_LOGN[m + 1] - t0) * rem + (1 << (k - 1))) >> k) + k * _LOG2_E4


class ModbusNoise:
    """Modbus RTU sound-level meter: LAeq/LAmin/LAmax dB(A) over each sampling window (x10 on the wire)."""

    CHANNELS = (wire.CH_NOISE, wire.CH_NOISE_LMIN, wire.CH_NOISE_LMAX)
    WARMUP_MS = 0

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart = uart
        self.address = cfg.get("address", 1)
        self.function = cfg.get("function", 3)
        self.register = cfg.get("register", 0)
        self.scale_div = cfg.get("scale_div", 10)
        self.baud = cfg.get("baud", 4800)
        self.poll_ms = cfg.get("poll_ms", 1000)
        self.timeout_ms = cfg.get("timeout_ms", 500)
        self.min_e4 = cfg.get("min_dba", 30) * 10000
        self.max_e4 = cfg.get("max_dba", 130) * 10000
        self.WARMUP_MS = cfg.get("warmup_ms", 0)
        q = bytearray(8)
        q[0] = self.address
        q[1] = self.function
        q[2] = (self.register >> 8) & 0xFF
        q[3] = self.register & 0xFF
        q[4] = 0
        q[5] = 1
        c = checksums.modbus_crc16(q, 0, 6)
        q[6] = c & 0xFF
        q[7] = c >> 8
        self.query = bytes(q)
        self._f = bytearray(_MAXF)
        self._p = 0
        self._rx = bytearray(_RX)
        # window accumulators (integers, milli-dB)
        self._n = 0
        self._sum_e4 = 0
        self._min_e4 = 0
        self._max_e4 = 0
        self.level_e4 = 0           # last instantaneous level
        self.raw = 0
        self.exception_code = 0
        self._t0 = 0
        self._started = False
        self._outstanding = False
        self._q_t = 0
        self._last_q_t = 0
        self._have_q = False
        self._req_t = 0
        self._got = False            # an answer arrived since request()
        # the window closed by the last request(), reported by fill()
        self._wn = 0
        self._wsum = 0
        self._wmin = 0
        self._wmax = 0
        self._wbad = False
        self._wexc = False
        self._bad = False            # a CRC error in this window
        self._exc = False            # an exception reply in this window
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.queries = 0
        self.exceptions = 0

    # -- contract -------------------------------------------------------------------------------
    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True

    def request(self, now_ms):
        """Close the current window at the sample time: the sample reports exactly the polls made
        since the previous sample time, however long the sampler then waits for other modules."""
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)
        self._wn = self._n
        self._wsum = self._sum_e4
        self._wmin = self._min_e4
        self._wmax = self._max_e4
        self._wbad = self._bad
        self._wexc = self._exc
        self._n = 0
        self._bad = False
        self._exc = False
        self._req_t = now_ms
        # an empty window (first sample, or every poll failed): ask now and wait for the answer
        self._got = self._wn > 0
        if not self._got and not self._outstanding:
            self._send(now_ms)

    def ready(self):
        return self._got

    def poll(self, now_ms):
        new = 0
        try:
            u = self._uart
            rx = self._rx
            for _ in range(_MAX_READS):
                if not u.any():
                    break
                k = u.readinto(rx, _RX)
                if not k:
                    break
                for i in range(k):
                    new += self._byte(rx[i], now_ms)
        except Exception:  # a bus error must not escape into the sampler
            pass
        if self._outstanding and ticks_diff(now_ms, self._q_t) > self.timeout_ms:
            self._outstanding = False
            self.timeouts += 1
            if self._p:
                self.bytes_skipped += self._p
                self._p = 0
        if not self._outstanding and (not self._have_q or ticks_diff(now_ms, self._last_q_t) >= self.poll_ms):
            self._send(now_ms)
        return new

    def fill(self, sample, now_ms):
        if self._wn == 0 and (self._n or self._exc or self._bad):
            # the window was empty and the answer to request()'s query came in: report it
            self._wn = self._n
            self._wsum = self._sum_e4
            self._wmin = self._min_e4
            self._wmax = self._max_e4
            self._wexc = self._wexc or self._exc
            self._wbad = self._wbad or self._bad
            self._n = 0
            self._exc = False
            self._bad = False
        n = self._wn
        if not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS:
            st = wire.STATUS_WARMING_UP
        elif n:
            st = wire.STATUS_OK
        elif self._wexc:
            st = wire.STATUS_SENSOR_ERROR
        elif self._wbad:
            st = wire.STATUS_CHECKSUM_ERROR
        else:
            st = wire.STATUS_NO_DATA
        if st != wire.STATUS_OK:
            sample.set(wire.CH_NOISE, st)
            sample.set(wire.CH_NOISE_LMIN, st)
            sample.set(wire.CH_NOISE_LMAX, st)
        else:
            self._set(sample, wire.CH_NOISE, self._wsum - log_n_e4(n))
            self._set(sample, wire.CH_NOISE_LMIN, self._wmin)
            self._set(sample, wire.CH_NOISE_LMAX, self._wmax)
        self._wn = 0
        self._wbad = False
        self._wexc = False

    def laeq_e4(self):
        """LAeq of the current window in units of 0.0001 dB (None before the first answer)."""
        return self._sum_e4 - log_n_e4(self._n) if self._n else None

    # -- internals ------------------------------------------------------------------------------
    def _set(self, sample, ch, e4):
        st = wire.STATUS_OK
        if e4 < self.min_e4 or e4 > self.max_e4:
            st = wire.STATUS_OUT_OF_RANGE
        # e4 dB -> wire deci-dB, rounded half up (levels are positive)
        sample.set(ch, st, (e4 + 500) // 1000)

    def _send(self, now_ms):
        try:
            self._uart.write(self.query)
        except Exception:
            pass
        self.queries += 1
        self._outstanding = True
        self._q_t = now_ms
        self._last_q_t = now_ms
        self._have_q = True

    def _ok_prefix(self):
        f = self._f
        p = self._p
        if f[0] != self.address:
            return False
        if p < 2:
            return True
        if f[1] == self.function:
            return p < 3 or f[2] == 2
        return f[1] == (self.function | 0x80)

    def _resync(self):
        f = self._f
        while self._p:
            n = self._p - 1
            for i in range(n):
                f[i] = f[i + 1]
            self._p = n
            self.bytes_skipped += 1
            if n == 0 or self._ok_prefix():
                return

    def _byte(self, b, now_ms):
        f = self._f
        if self._p == 0 and b != self.address:
            self.bytes_skipped += 1
            return 0
        f[self._p] = b
        self._p += 1
        if not self._ok_prefix():
            self._resync()
            return 0
        p = self._p
        total = 5 if f[1] & 0x80 else 7
        if p < total:
            return 0
        c = checksums.modbus_crc16(f, 0, total - 2)
        if f[total - 2] != (c & 0xFF) or f[total - 1] != (c >> 8):
            self.checksum_errors += 1
            self._bad = True
            self._resync()
            return 0
        self._p = 0
        self.frames_ok += 1
        self._outstanding = False
        if total == 5:
            self.exceptions += 1
            self.exception_code = f[2]
            self._exc = True
            self._got = True
            return 0
        raw = (f[3] << 8) | f[4]
        self.raw = raw
        lvl = (raw * 10000) // self.scale_div
        self.level_e4 = lvl
        if self._n == 0:
            self._sum_e4 = lvl
            self._min_e4 = lvl
            self._max_e4 = lvl
        else:
            self._sum_e4 = logadd_e4(self._sum_e4, lvl)
            if lvl < self._min_e4:
                self._min_e4 = lvl
            if lvl > self._max_e4:
                self._max_e4 = lvl
        self._n += 1
        self._got = True
        return 1
