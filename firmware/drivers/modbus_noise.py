# RS485 Modbus RTU sound-level transmitter (Renke RS-ZS-N01 style). Protocol page:
# docs/sensors/modbus_noise.md.
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
# float formula is measured by tests/test_models_modbus_noise.py (docs/sensors/modbus_noise.md).

import array
import math

from ..compat import const, ticks_diff
from .. import wire
from . import checksums
from .frames import CHECKSUM, GOOD, SEEN_BAD, SEEN_FAULT, SEEN_GOOD, UARTPart, status

_MAXF = const(7)
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


def read_request(address, function, register):
    """The 8-byte request reading one register: addr func regH regL 00 01 crcL crcH
    (allocates; built once)."""
    q = bytearray((address, function, (register >> 8) & 0xFF, register & 0xFF, 0, 1, 0, 0))
    c = checksums.modbus_crc16(q, 0, 6)
    q[6] = c & 0xFF
    q[7] = c >> 8
    return bytes(q)


class ModbusNoise(UARTPart):
    """Modbus RTU sound-level meter: LAeq/LAmin/LAmax dB(A) over each sampling window (x10 on the wire)."""

    CHANNELS = (wire.CH_NOISE, wire.CH_NOISE_LMIN, wire.CH_NOISE_LMAX)
    WARMUP_MS = 0
    READS = 8                       # chunks per poll: a reply is 7 bytes, 128 bytes bound a flood

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart_init(uart, cfg, 500, _MAXF)
        self.address = cfg.get("address", 1)
        self.function = cfg.get("function", 3)
        self.register = cfg.get("register", 0)
        self.scale_div = cfg.get("scale_div", 10)
        self.baud = cfg.get("baud", 4800)
        self.poll_ms = cfg.get("poll_ms", 1000)
        self.min_e4 = cfg.get("min_dba", 30) * 10000
        self.max_e4 = cfg.get("max_dba", 130) * 10000
        self.query = read_request(self.address, self.function, self.register)
        # window accumulators (integers, milli-dB)
        self._n = 0
        self._sum_e4 = 0
        self._min_e4 = 0
        self._max_e4 = 0
        self.level_e4 = 0           # last instantaneous level
        self.raw = 0
        self.exception_code = 0
        self._outstanding = False
        self._q_t = 0
        self._last_q_t = 0
        self._have_q = False
        self._got = False            # an answer arrived since request()
        # the window closed by the last request(), reported by fill()
        self._wn = 0
        self._wsum = 0
        self._wmin = 0
        self._wmax = 0
        self._wseen = 0
        # self.seen: a CRC error (SEEN_BAD) or an exception reply (SEEN_FAULT) in this window
        self.queries = 0
        self.exceptions = 0

    # -- the Modbus RTU frame parser: the replies to a one-register read from `address` with
    # `function`, addr func 02 valH valL crcL crcH, or the exception addr func|0x80 code crcL crcH
    def _prefix_ok(self):
        f = self.fbuf
        p = self.fpos
        if f[0] != self.address:
            return False
        if p < 2:
            return True
        if f[1] == self.function:
            return p < 3 or f[2] == 2
        return f[1] == (self.function | 0x80)

    def _length(self):
        if self.fpos < 2:
            return 0
        return 5 if self.fbuf[1] & 0x80 else 7

    def _check(self, total):
        f = self.fbuf
        c = checksums.modbus_crc16(f, 0, total - 2)
        return GOOD if f[total - 2] == (c & 0xFF) and f[total - 1] == (c >> 8) else CHECKSUM

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
        self._wseen = self.seen
        self._n = 0
        self.seen = 0
        self._req_t = now_ms
        # an empty window (first sample, or every poll failed): ask now and wait for the answer
        self._got = self._wn > 0
        if not self._got and not self._outstanding:
            self._send(now_ms)

    def ready(self):
        return self._got

    def poll(self, now_ms):
        new = UARTPart.poll(self, now_ms)
        if self._outstanding and ticks_diff(now_ms, self._q_t) > self.timeout_ms:
            self._outstanding = False
            self.timeouts += 1
            self.bytes_skipped += self.fpos          # a reply cut short will not be completed
            self.fpos = 0
        if not self._outstanding and (not self._have_q or ticks_diff(now_ms, self._last_q_t) >= self.poll_ms):
            self._send(now_ms)
        return new

    def fill(self, sample, now_ms):
        if self._wn == 0 and (self._n or self.seen):
            # the window was empty and the answer to request()'s query came in: report it
            self._wn = self._n
            self._wsum = self._sum_e4
            self._wmin = self._min_e4
            self._wmax = self._max_e4
            self._wseen |= self.seen
            self._n = 0
            self.seen = 0
        n = self._wn
        st = status(self._wseen | (SEEN_GOOD if n else 0),
                    not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS)
        if st != wire.STATUS_OK:
            sample.set(wire.CH_NOISE, st)
            sample.set(wire.CH_NOISE_LMIN, st)
            sample.set(wire.CH_NOISE_LMAX, st)
        else:
            self._set(sample, wire.CH_NOISE, self._wsum - log_n_e4(n))
            self._set(sample, wire.CH_NOISE_LMIN, self._wmin)
            self._set(sample, wire.CH_NOISE_LMAX, self._wmax)
        self._wn = 0
        self._wseen = 0

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

    def take(self, v):
        if v == CHECKSUM:
            self.checksum_errors += 1
            self.seen |= SEEN_BAD
            return 0
        return self._frame(self.fbuf)

    def _frame(self, f):
        self.frames_ok += 1
        self._outstanding = False
        if self.flen == 5:
            self.exceptions += 1
            self.exception_code = f[2]
            self.seen |= SEEN_FAULT
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
