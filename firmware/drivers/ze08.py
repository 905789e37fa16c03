# Winsen ZE08-CH2O formaldehyde module on a UART, 9600 8N1. Protocol page: docs/sensors/ze08.md.
# 9-byte Winsen frames (firmware/drivers/winsen.py); the ZE07/08/25 command dialect (mode switch
# 78 41 = Q&A, 78 40 = active upload; not ZE03's 78 04/03).
#   active upload  FF 17 04 00 ppbH ppbL rangeH rangeL CS   (0x17 = CH2O, 0x04 = unit ppb, decimals 0)
#   Q&A reply      FF 86 ugH ugL 00 00 ppbH ppbL CS          (ZE07-CH2O manual table 8)
# The box uses Q&A mode; active-upload frames (the power-on default, so a module that rebooted)
# are decoded too and the Q&A command is sent again on the next request.
# cfg: {"range_ppb": 5000, "warmup_ms": 180000, "timeout_ms": 1000, "mode": "qa"|"active"}
# Uncertain in public sources: the warm-up ("minutes"; default 180 s); whether the Q&A reply's ppb
# word can carry decimals (we read it as whole ppb, as the manual's example does).
# An active frame with another unit code than 0x04 is sensor_error rather than a guessed scale.

from ..compat import const
from .. import wire
from .frames import SEEN_FAULT, SEEN_GOOD
from .winsen import CMD_READ, Winsen  # noqa: F401 - CMD_READ: this part's read command

_GAS_CH2O = const(0x17)
_UNIT_PPB = const(0x04)

CMD_QA_MODE = b"\xff\x01\x78\x41\x00\x00\x00\x00\x46"
CMD_ACTIVE_MODE = b"\xff\x01\x78\x40\x00\x00\x00\x00\x47"
_POW10 = (1, 10, 100, 1000)


class ZE08(Winsen):
    """Winsen ZE08-CH2O. hcho_ppb (wire CH_HCHO, x1); hcho_ugm3 kept from Q&A replies."""

    CHANNELS = (wire.CH_HCHO,)
    QA_MODE = CMD_QA_MODE
    ACTIVE_MODE = CMD_ACTIVE_MODE

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._winsen_init(uart, cfg, bytes((0x86, _GAS_CH2O)), wire.CH_HCHO)
        self.range_ppb = cfg.get("range_ppb", 5000)
        self.hcho_ppb = 0
        self.hcho_ugm3 = 0
        self.full_range_ppb = 0

    def _frame(self, f):
        self.frames_ok += 1
        if f[1] == 0x86:
            self.hcho_ugm3 = (f[2] << 8) | f[3]
            self.hcho_ppb = (f[6] << 8) | f[7]
        else:
            dec = f[3]
            if f[2] != _UNIT_PPB or dec > 3:
                self.seen |= SEEN_FAULT
                return 0
            self._active_seen = self.qa
            den = _POW10[dec]
            self.hcho_ppb = (((f[4] << 8) | f[5]) + den // 2) // den
            self.full_range_ppb = (f[6] << 8) | f[7]
        self.value = self.hcho_ppb
        self.over = self.hcho_ppb > self.range_ppb
        self.seen |= SEEN_GOOD
        return 1
