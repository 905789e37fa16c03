# Plantower PMS5003 / PMS7003 particulate sensor on a UART, 9600 8N1. Protocol page:
# docs/sensors/pms5003.md. Data frame: 42 4D, length 00 1C, 13 big-endian words, sum16 checksum;
# command acknowledgements: 42 4D 00 04 CMD DATA sum16.
#
# The box uses passive (question and answer) mode: one read request per sample time, so the value
# in a sample is the module's answer at that time, not a frame of unknown age. Active-mode frames
# that arrive before the mode switch are parsed too (a module that rebooted is back in active
# mode), which also lets the driver run against a module left in active mode.
# cfg: {"active": False (True: leave the module in active mode), "warmup_ms": 30000,
#       "timeout_ms": 1000}

from ..compat import const
from .. import wire
from . import checksums
from .frames import CHECKSUM, GOOD, SEEN_BAD, SEEN_FAULT, SEEN_GOOD, UARTPart

FRAME_LEN = const(32)
ACK_LEN = const(8)

# the commands the box sends (sleep and wake: docs/sensors/pms5003.md)
CMD_PASSIVE = b"\x42\x4d\xe1\x00\x00\x01\x70"
CMD_ACTIVE = b"\x42\x4d\xe1\x00\x01\x01\x71"
CMD_READ = b"\x42\x4d\xe2\x00\x00\x01\x71"

# Specified effective range: PM2.5 0-500 ug/m3, max >= 1000 (manual V2.3). Above 1000 is flagged.
_PM_MAX_UGM3 = const(1000)


class PMS5003(UARTPart):
    """Plantower PMS5003 on a UART. Values in ug/m3 (mass) and particles per 0.1 L (counts)."""

    # in the order of the frame's data words 0..11 (word 12: version and error code)
    CHANNELS = (wire.CH_PM1_CF1, wire.CH_PM25_CF1, wire.CH_PM10_CF1, wire.CH_PM1, wire.CH_PM25,
                wire.CH_PM10, wire.CH_N03, wire.CH_N05, wire.CH_N10, wire.CH_N25, wire.CH_N50,
                wire.CH_N100)
    WARMUP_MS = 30000               # fan spin-up; first frames after power-on/wake read low or zero

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart_init(uart, cfg, 1000, FRAME_LEN)     # datasheet: single response < 1 s
        self.words = [0] * 13                # last good frame's data words
        self.version = 0
        self.error_code = 0
        self.passive = not cfg.get("active")
        self.acks = 0

    # -- the Plantower family's frame parser: 42 4D, a big-endian length (28: a data frame of 32
    # bytes, 4: an 8-byte command acknowledgement), the payload, sum16 of all bytes before it
    def _prefix_ok(self):
        f = self.fbuf
        n = self.fpos
        if f[0] != 0x42 or (n > 1 and f[1] != 0x4D) or (n > 2 and f[2] != 0):
            return False
        return n < 4 or f[3] == 28 or f[3] == 4

    def _length(self):
        if self.fpos < 4:
            return 0
        return FRAME_LEN if self.fbuf[3] == 28 else ACK_LEN

    def _check(self, total):
        f = self.fbuf
        cs = (f[total - 2] << 8) | f[total - 1]
        return GOOD if checksums.plantower_sum16(f, 0, total - 2) == cs else CHECKSUM

    # -- request and status ---------------------------------------------------------------------
    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        self._write(CMD_PASSIVE if self.passive else CMD_ACTIVE)

    def request(self, now_ms):
        # bytes still buffered belong to an older answer (a truncated frame): drop them
        self.bytes_skipped += self.fpos
        self.fpos = 0
        self.seen = 0
        self._pending = True
        self._req_t = now_ms
        if self.passive:
            self._write(CMD_READ)

    def ready(self):
        return (self.seen & SEEN_GOOD) != 0

    def _frame(self, f):
        if self.flen == ACK_LEN:
            self.acks += 1
            return 0
        w = self.words
        for k in range(13):
            w[k] = (f[4 + 2 * k] << 8) | f[5 + 2 * k]
        self.version = f[28]
        self.error_code = f[29]
        self.frames_ok += 1
        self.seen |= SEEN_GOOD
        return 1

    def fill(self, sample, now_ms):
        """Write this sensor's channels into `sample` (a wire.Sample)."""
        st = self._status(now_ms)
        self.seen &= SEEN_BAD | SEEN_FAULT        # a reading is used once
        w = self.words
        # plausibility: flag, never clip
        if st == wire.STATUS_OK and (w[4] > _PM_MAX_UGM3 or w[5] > _PM_MAX_UGM3
                                     or w[3] > _PM_MAX_UGM3):
            st = wire.STATUS_OUT_OF_RANGE
        chs = self.CHANNELS
        for k in range(12):
            sample.set(chs[k], st, w[k])
