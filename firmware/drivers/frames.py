# What every sensor driver shares between its bytes and its channels (docs/contracts.md, "Frame
# parsing and status"):
#
# - status(): one rule that turns what a request got (the SEEN_* bits a driver collects from its
#   frame verdicts) into the status of its channels, the same for every part.
# - UARTPart: the base of the UART drivers (PMS5003, SDS011, MH-Z19B, ZE03, ZE08, the Modbus noise
#   meter). Its framing half is the byte-wise frame assembler every UART protocol family builds on
#   (ESPHome's check_byte_()): push(b) takes one byte and returns INCOMPLETE, or the verdict on
#   the frame that byte completed: GOOD (the frame is in fbuf[0:flen] until the next push),
#   CHECKSUM or FRAMING. The family's parser is methods of its class: _prefix_ok() (can
#   fbuf[0:fpos], fpos >= 1, start a frame?), _check(total) (the verdict on the complete frame,
#   with the family's checksum from checksums.py) and, where frames differ in length, _length()
#   (the length of the frame fbuf starts, 0 while the prefix does not say yet; by default
#   fbuf's). The resynchronisation is the same for all:
#   after a bad frame or a prefix that cannot start one, drop the first byte, then every byte
#   until the held bytes start like a frame again, each dropped byte counted in bytes_skipped.
#   Its I/O half is the non-blocking read loop that hands every verdict to take() and every good
#   frame to the part's _frame() (ESPHome's parse_data_()), the answer time-out, command writes
#   that never raise, and the request/status steps of a question-and-answer part.
#   No allocation in push(), poll(), take() or fill().
#
# `envbox decode` (tools/decode_mp.py) drives the same push() and take().
# (The family methods and the part's attributes are its subclasses': the type checker cannot
# see them here.)
# pyright: reportAttributeAccessIssue=false

from ..compat import const, ticks_diff
from .. import wire

# frame verdicts: push() returns INCOMPLETE (0) until a frame is complete
INCOMPLETE = const(0)
GOOD = const(1)
CHECKSUM = const(2)
FRAMING = const(3)          # a complete frame whose fixed end byte is wrong (Nova)
OVERLONG = const(4)         # a line longer than the protocol allows (NMEA)

# what the answers since a request were (a driver's `seen`)
SEEN_GOOD = const(1)        # a reading
SEEN_BAD = const(2)         # a frame with a bad checksum
SEEN_FAULT = const(4)       # a good frame the part reports a fault in (other gas, unknown unit)

_RX = const(16)


def status(seen, warming):
    """The status of a part's channels from what its answers since the request were: warming
    up overrides all, then a reading, then a fault the part reported, then a bad checksum; no
    answer is no_data. A reading's value may still be flagged out_of_range by its driver."""
    if warming:
        return wire.STATUS_WARMING_UP
    if seen & SEEN_GOOD:
        return wire.STATUS_OK
    if seen & SEEN_FAULT:
        return wire.STATUS_SENSOR_ERROR
    if seen & SEEN_BAD:
        return wire.STATUS_CHECKSUM_ERROR
    return wire.STATUS_NO_DATA


class UARTPart:
    READS = 16              # chunks per poll (256 bytes): bounds the time in poll on a flooded line

    def _uart_init(self, uart, cfg, timeout_ms, frame_len):
        self._uart = uart
        self.WARMUP_MS = cfg.get("warmup_ms", self.WARMUP_MS)
        self.timeout_ms = cfg.get("timeout_ms", timeout_ms)
        self._rx = bytearray(_RX)
        self.fbuf = bytearray(frame_len)    # the frame being assembled
        self.fpos = 0                       # bytes held in fbuf
        self.flen = 0                       # length of the last complete frame
        self._t0 = 0
        self._started = False
        self._req_t = 0
        self._pending = False
        self.seen = 0                # SEEN_* bits of the answers since the request
        self.frames_ok = self.checksum_errors = self.bytes_skipped = self.timeouts = 0

    # -- framing --------------------------------------------------------------------------------
    def push(self, b):
        n = self.fpos
        self.fbuf[n] = b
        n += 1
        self.fpos = n
        if not self._prefix_ok():
            self._resync()
            return INCOMPLETE
        total = self._length()
        if not total or n < total:
            return INCOMPLETE
        self.flen = total
        v = self._check(total)
        if v == GOOD:
            self.fpos = 0
        else:
            self._resync()
        return v

    def _length(self):
        return len(self.fbuf)            # a family of fixed-length frames

    def _resync(self):
        f = self.fbuf
        while True:
            n = self.fpos - 1
            for i in range(n):
                f[i] = f[i + 1]
            self.fpos = n
            self.bytes_skipped += 1
            if n == 0 or self._prefix_ok():
                return

    # -- I/O ------------------------------------------------------------------------------------
    def ready(self):
        return self.seen != 0

    def poll(self, now_ms):
        new = 0
        try:
            u = self._uart
            rx = self._rx
            for _ in range(self.READS):
                if not u.any():
                    break
                k = u.readinto(rx, _RX)
                if not k:
                    break
                for i in range(k):
                    v = self.push(rx[i])
                    if v:
                        new += self.take(v)
        except Exception:  # a bus error must not escape into the sampler
            pass
        if self._pending and not self.ready() and ticks_diff(now_ms, self._req_t) > self.timeout_ms:
            self._pending = False
            self.timeouts += 1
        return new

    def take(self, v):
        """What a complete frame's verdict does to the driver: a good frame goes to the part's
        _frame(), which returns 1 for a new reading."""
        if v == GOOD:
            return self._frame(self.fbuf)
        if v == CHECKSUM:
            self.checksum_errors += 1
            self.seen |= SEEN_BAD
        elif v == FRAMING:
            self.framing_errors += 1
        return 0

    def _write(self, cmd):
        try:
            self._uart.write(cmd)
        except Exception:
            pass

    # -- request and status ---------------------------------------------------------------------
    def _ask(self, now_ms):
        """A question-and-answer request: start if not started, consume what is already there
        (a flush that keeps counting), forget the last request's answers."""
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)
        self.seen = 0
        self._pending = True
        self._req_t = now_ms

    def _status(self, now_ms):
        """The channels' status at fill(): counts an unanswered request as a time-out, then
        status() of the answers, warming up until WARMUP_MS after start()."""
        if self._pending:
            self._pending = False
            if not self.ready():
                self.timeouts += 1
        return status(self.seen, not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS)
