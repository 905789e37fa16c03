# Winsen MH-Z19B NDIR CO2 module on a UART, 9600 8N1. Protocol page: docs/sensors/mhz19b.md.
# Q&A only: read `FF 01 86 00 00 00 00 00 79`, reply `FF 86 HH LL TT SS UU UU CS` with
# CO2 = HH*256+LL ppm and TT = temperature + 40 C (undocumented, ESPHome reads it; kept as
# temp_c for diagnostics, never put into CH_TEMP). Winsen negated-sum checksum.
# cfg: {"range_ppm": 5000,      out_of_range above it (the module's configured range)
#       "set_range": None|2000|5000|10000,  send the 0x99 range command at start
#       "abc": None|True|False, send ABC on/off at start (None: leave the module's setting;
#                               ABC drags readings to 400 ppm when the 24 h minimum is not fresh air)
#       "warmup_ms": 180000, "timeout_ms": 1000}
# Warm-up: 3 min pre-heat; during it the module reports fixed values such as 500 or 5000 ppm, so
# the driver's timer, not the value, decides. Uncertain: replies to the ABC/range commands are
# not documented; any other valid frame than FF 86 is counted in frames_ok and otherwise ignored.

from .. import wire
from .frames import SEEN_GOOD
from .winsen import CMD_READ, Winsen, command  # noqa: F401 - CMD_READ: this part's read command
CMD_ABC_ON = b"\xff\x01\x79\xa0\x00\x00\x00\x00\xe6"
CMD_ABC_OFF = b"\xff\x01\x79\x00\x00\x00\x00\x00\x86"


def range_command(ppm):
    """0x99 detection-range command (allocates; used once at start)."""
    return command(0x99, 0, 0, 0, (ppm >> 8) & 0xFF, ppm & 0xFF)


class MHZ19B(Winsen):
    """Winsen MH-Z19B. co2_ppm into wire CH_CO2."""

    CHANNELS = (wire.CH_CO2,)

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        # 0x86 = read reply; the others are the command bytes the module may echo in acks
        self._winsen_init(uart, cfg, b"\x86\x79\x99\x87\x88", wire.CH_CO2)
        self.range_ppm = cfg.get("range_ppm", cfg.get("set_range") or 5000)
        self._set_range = cfg.get("set_range")
        self._abc = cfg.get("abc")
        self.co2_ppm = 0
        self.temp_c = 0
        self.status_byte = 0

    def start(self, now_ms):
        Winsen.start(self, now_ms)
        if self._abc is not None:
            self._write(CMD_ABC_ON if self._abc else CMD_ABC_OFF)
        if self._set_range:
            self._write(range_command(self._set_range))

    def _frame(self, f):
        self.frames_ok += 1
        if f[1] != 0x86:
            return 0
        self.co2_ppm = self.value = (f[2] << 8) | f[3]
        self.over = self.co2_ppm > self.range_ppm
        self.temp_c = f[4] - 40
        self.status_byte = f[5]
        self.seen |= SEEN_GOOD
        return 1
