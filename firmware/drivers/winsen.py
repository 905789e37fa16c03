# The Winsen UART family (MH-Z19B, ZE03, ZE07/ZE08, ZE25 ...): 9-byte frames FF b1 .. b7 CS, CS the
# negated byte sum of b1..b7, 9600 8N1. Protocol pages: docs/sensors/mhz19b.md, ze03.md, ze08.md.
#
# Winsen is the family's frame parser (_prefix_ok, _check) and the question-and-answer driver
# the three parts share (request, mode switch, time-out, status). A part gives the second bytes
# its frames start with, its mode commands and _frame() (what a good frame means), which sets
# `value` (the reading in its channel's wire units) and `over` (above the part's range).
# (The part's methods are its subclass's: the type checker cannot see them here.)
# pyright: reportAttributeAccessIssue=false

from ..compat import const
from .. import wire
from . import checksums
from .frames import CHECKSUM, GOOD, UARTPart

FRAME_LEN = const(9)

CMD_READ = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"


def command(cmd, d3=0, d4=0, d5=0, d6=0, d7=0):
    """A 9-byte command FF 01 CMD d3..d7 CS (allocates; for commands sent once, at start)."""
    f = bytearray((0xFF, 0x01, cmd, d3, d4, d5, d6, d7, 0))
    f[8] = checksums.winsen_cs(f, 1, 8)
    return bytes(f)


class Winsen(UARTPart):
    """One Winsen module in question-and-answer mode. cfg: warmup_ms, timeout_ms and, for parts
    with a mode switch, "mode": "qa" (default) or "active"."""

    WARMUP_MS = 180000
    QA_MODE = None              # the command to Q&A mode (None: the part has no mode switch)
    ACTIVE_MODE = None

    def _winsen_init(self, uart, cfg, accept, ch):
        """accept: the second bytes a frame of this part may start with (bytes)."""
        self._uart_init(uart, cfg, 1000, FRAME_LEN)
        self.accept = accept
        self.ch = ch
        self.value = 0
        self.over = False
        self.qa = self.QA_MODE is None or cfg.get("mode", "qa") == "qa"
        self._active_seen = False       # an active-upload frame since the last request
        self.mode_resends = 0

    # -- the family's frame parser: FF, one of the part's second bytes, 6 bytes, negated sum --------
    def _prefix_ok(self):
        f = self.fbuf
        return f[0] == 0xFF and (self.fpos < 2 or f[1] in self.accept)

    def _check(self, total):
        f = self.fbuf
        return GOOD if checksums.winsen_cs(f, 1, 8) == f[8] else CHECKSUM

    # -- request and status ---------------------------------------------------------------------
    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        if self.QA_MODE:
            self._write(self.QA_MODE if self.qa else self.ACTIVE_MODE)

    def request(self, now_ms):
        self._ask(now_ms)
        if self.qa:
            if self._active_seen:       # module rebooted into active upload: ask for Q&A again
                self._active_seen = False
                self.mode_resends += 1
                self._write(self.QA_MODE)
            self._write(CMD_READ)

    def fill(self, sample, now_ms):
        st = self._status(now_ms)
        if st == wire.STATUS_OK and self.over:
            st = wire.STATUS_OUT_OF_RANGE
        sample.set(self.ch, st, self.value)
