# Plantower PMS5003 / PMS7003 particulate sensor on a UART, 9600 8N1.
# Plantower PMS5003 manual V2.3, appendix I (frame) and appendix II (commands); the protocol card
# in docs mirrors it. Data frame: 42 4D, length 00 1C, 13 big-endian words, sum16 checksum.
#
# The box uses passive (question and answer) mode: one read request per sample time, so the value
# in a sample is the module's answer at that time, not a frame of unknown age. Active-mode frames
# that arrive before the mode switch are parsed too (a module that rebooted is back in active
# mode), which also lets the driver run against a module left in active mode.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .. import wire
from ..compat import ticks_diff

_FRAME_LEN = const(32)
_ACK_LEN = const(8)
_BUF_LEN = const(96)            # three frames: room for garbage, split and glued frames
_RX_LEN = const(32)
_WARMUP_MS = const(30000)       # fan spin-up; first frames after power-on/wake read low or zero
ANSWER_TIMEOUT_MS = const(1000)  # datasheet: single response < 1 s

CMD_PASSIVE = b"\x42\x4d\xe1\x00\x00\x01\x70"
CMD_ACTIVE = b"\x42\x4d\xe1\x00\x01\x01\x71"
CMD_READ = b"\x42\x4d\xe2\x00\x00\x01\x71"
CMD_SLEEP = b"\x42\x4d\xe4\x00\x00\x01\x73"
CMD_WAKE = b"\x42\x4d\xe4\x00\x01\x01\x74"

# (word index in the frame, wire channel), words counted from byte 4
_MAP = (
    (0, wire.CH_PM1_CF1), (1, wire.CH_PM25_CF1), (2, wire.CH_PM10_CF1),
    (3, wire.CH_PM1), (4, wire.CH_PM25), (5, wire.CH_PM10),
    (6, wire.CH_N03), (7, wire.CH_N05), (8, wire.CH_N10),
    (9, wire.CH_N25), (10, wire.CH_N50), (11, wire.CH_N100),
)
# Specified effective range: PM2.5 0-500 ug/m3, max >= 1000 (manual V2.3). Above 1000 is flagged.
_PM_MAX_UGM3 = const(1000)


def sum16(buf, n):
    s = 0
    for i in range(n):
        s += buf[i]
    return s & 0xFFFF


class PMS5003:
    """Plantower PMS5003 on a UART. Values in ug/m3 (mass) and particles per 0.1 L (counts)."""

    CHANNELS = (wire.CH_PM1_CF1, wire.CH_PM25_CF1, wire.CH_PM10_CF1, wire.CH_PM1, wire.CH_PM25,
                wire.CH_PM10, wire.CH_N03, wire.CH_N05, wire.CH_N10, wire.CH_N25, wire.CH_N50,
                wire.CH_N100)
    WARMUP_MS = _WARMUP_MS

    def __init__(self, uart, cfg=None):
        self._uart = uart
        self._buf = bytearray(_BUF_LEN)
        self._rx = bytearray(_RX_LEN)     # UART reads land here, then move into _buf
        self._n = 0                       # bytes held in _buf
        self.words = [0] * 13             # last good frame's data words
        self.version = 0
        self.error_code = 0
        self._have = False                # a good frame arrived since the last request
        self._bad = False                 # a frame with a bad checksum arrived since then
        self._requested_at = 0
        self._pending = False
        self._started_at = 0
        self._started = False
        self.passive = not (cfg and cfg.get("active"))
        # counters
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.acks = 0

    def start(self, now_ms):
        self._started_at = now_ms
        self._started = True
        self._uart.write(CMD_PASSIVE if self.passive else CMD_ACTIVE)

    def request(self, now_ms):
        # bytes still buffered belong to an older answer (a truncated frame): drop them
        if self._n:
            self.bytes_skipped += self._n
            self._n = 0
        self._have = False
        self._bad = False
        self._pending = True
        self._requested_at = now_ms
        if self.passive:
            self._uart.write(CMD_READ)

    def ready(self):
        return self._have

    def poll(self, now_ms):
        """Read what the UART holds and parse every complete frame. Never blocks, never raises."""
        new = 0
        try:
            while True:
                room = _BUF_LEN - self._n
                if room == 0:
                    # full of bytes that never formed a frame: keep the last byte (may be 0x42)
                    self.bytes_skipped += self._n - 1
                    self._buf[0] = self._buf[self._n - 1]
                    self._n = 1
                    room = _BUF_LEN - 1
                if not self._uart.any():
                    break
                got = self._uart.readinto(self._rx, room if room < _RX_LEN else _RX_LEN)
                if not got:
                    break
                b = self._buf
                rx = self._rx
                n = self._n
                for i in range(got):
                    b[n + i] = rx[i]
                self._n = n + got
                new += self._parse()
        except OSError:
            pass
        return new

    def _drop(self, k):
        # shift the buffer left by k bytes
        n = self._n - k
        b = self._buf
        for i in range(n):
            b[i] = b[i + k]
        self._n = n

    def _parse(self):
        b = self._buf
        new = 0
        while True:
            # find the start bytes 42 4D
            n = self._n
            i = 0
            while i < n - 1:
                if b[i] == 0x42 and b[i + 1] == 0x4D:
                    break
                i += 1
            else:
                # no header: keep a trailing 0x42, it may be the first half of one
                i = n - 1 if (n and b[n - 1] == 0x42) else n
            if i:
                self.bytes_skipped += i
                self._drop(i)
                n = self._n
            if n < 4:
                return new
            length = (b[2] << 8) | b[3]
            if length == 4:
                total = _ACK_LEN
            elif length == 28:
                total = _FRAME_LEN
            else:
                # not a frame we know: skip this header and resynchronise
                self.bytes_skipped += 2
                self._drop(2)
                continue
            if n < total:
                return new
            cs = (b[total - 2] << 8) | b[total - 1]
            if sum16(b, total - 2) != cs:
                self.checksum_errors += 1
                self._bad = True
                self.bytes_skipped += 2
                self._drop(2)   # the real frame may start inside this one
                continue
            if total == _FRAME_LEN:
                w = self.words
                for k in range(13):
                    w[k] = (b[4 + 2 * k] << 8) | b[5 + 2 * k]
                self.version = b[28]
                self.error_code = b[29]
                self.frames_ok += 1
                self._have = True
                new += 1
            else:
                self.acks += 1
            self._drop(total)

    def fill(self, sample, now_ms):
        """Write this sensor's channels into `sample` (a wire.Sample)."""
        warming = ticks_diff(now_ms, self._started_at) < _WARMUP_MS
        if not self._have:
            if self._pending:
                self.timeouts += 1
                self._pending = False
            if self._bad:
                st = wire.STATUS_CHECKSUM_ERROR
            elif warming:
                st = wire.STATUS_WARMING_UP
            else:
                st = wire.STATUS_NO_DATA
            for _, ch in _MAP:
                sample.set(ch, st)
            return
        self._pending = False
        self._have = False
        w = self.words
        if warming:
            for _, ch in _MAP:
                sample.set(ch, wire.STATUS_WARMING_UP)
            return
        # plausibility: flag, never clip
        bad = w[4] > _PM_MAX_UGM3 or w[5] > _PM_MAX_UGM3 or w[3] > _PM_MAX_UGM3
        st = wire.STATUS_OUT_OF_RANGE if bad else wire.STATUS_OK
        for k, ch in _MAP:
            sample.set(ch, st, w[k])
