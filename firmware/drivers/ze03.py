# Winsen ZE03 electrochemical gas module (O3, NO2, SO2, CO ...) on a UART, 9600 8N1.
# Protocol page: docs/sensors/ze03.md. 9-byte Winsen frames (firmware/drivers/winsen.py).
#
# One instance per module (per gas); cfg picks the gas and its scaling:
#   {"gas": "o3"|"no2"|"so2"|"co",      which module this is (gas code checked in every frame)
#    "channel": wire.CH_*,                optional, default from the gas
#    "decimals": None|0|1|2|3,            None: take the decimals byte of each frame (default)
#    "legacy_decimals": 0|1|2,            decimals for the old reply layout without gas/decimals bytes
#    "range_ppm": int,                    above it: out_of_range (value kept)
#    "warmup_ms": int, "timeout_ms": int, "mode": "qa"|"active"}
#
# What public sources leave uncertain and how this driver handles it (the page says more):
# - Scaling differs between module firmware versions: the DFRobot-style reply carries the gas
#   code (byte 4) and a decimals byte (byte 5) and that is what we decode by default. A reply
#   whose gas and decimals bytes are both 0 is taken as the old layout and scaled with cfg
#   "legacy_decimals" (default x0.1 for O3/NO2/SO2, x1 for CO). cfg "decimals" forces a fixed
#   resolution for modules whose decimals byte turns out to be wrong on a reference-gas check.
# - The ZE03 active-upload layout is documented only for ZE08/ZE25 (FF gas unit decimals concH
#   concL rangeH rangeL CS); we parse it in that layout with unit 0x04 = ppb and 0x02 = ppm and
#   report any other unit code as sensor_error rather than guess.
# - A frame with the wrong gas code (module swapped between sockets) is sensor_error, not a value.
# - Warm-up: only "minutes" for electrochemical stabilisation; default 180 s, configurable.
# The box keeps the module in Q&A mode (one read per sample). A module that rebooted comes back
# in active upload; its frames are used too and the Q&A command is sent again on the next request.

from ..compat import const
from .. import wire
from .frames import SEEN_FAULT, SEEN_GOOD
from .winsen import CMD_READ, Winsen  # noqa: F401 - CMD_READ: this part's read command

CMD_QA_MODE = b"\xff\x01\x78\x04\x00\x00\x00\x00\x83"
CMD_ACTIVE_MODE = b"\xff\x01\x78\x03\x00\x00\x00\x00\x84"

UNIT_PPM = const(0x02)
UNIT_PPB = const(0x04)

# gas name -> (gas code, channel, wire units per ppm, legacy decimals, range in ppm)
GASES = {
    "co": (0x04, wire.CH_CO, 10, 0, 1000),     # co_ppm x10; ZE03-CO 0-1000 ppm
    "o3": (0x2A, wire.CH_O3, 1000, 1, 10),     # o3_ppb x1; ZE03-O3 0-10 ppm
    "no2": (0x2C, wire.CH_NO2, 1000, 1, 20),
    "so2": (0x2B, wire.CH_SO2, 1000, 1, 20),
}
_POW10 = (1, 10, 100, 1000, 10000)


class ZE03(Winsen):
    """Winsen ZE03 single-gas module. Value in the gas channel's unit (ppb for O3/NO2/SO2, ppm x10 for CO)."""

    QA_MODE = CMD_QA_MODE
    ACTIVE_MODE = CMD_ACTIVE_MODE

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self.gas = cfg.get("gas", "co")
        code, ch, per_ppm, legacy, rng = GASES[self.gas]
        self.gas_code = code
        # read replies, this gas's active frames, mode-switch acks
        self._winsen_init(uart, cfg, bytes((0x86, code, 0x78)), cfg.get("channel", ch))
        self.CHANNELS = (self.ch,)
        self._per_ppm = per_ppm
        self._decimals = cfg.get("decimals", None)
        self._legacy = cfg.get("legacy_decimals", legacy)
        self.range_ppm = cfg.get("range_ppm", rng)
        # last good reading
        self.conc_raw = 0
        self.decimals = 0
        self.unit = UNIT_PPM
        self.temp_raw = 0            # board temperature word of the DFRobot-style reply (unscaled)
        self.gas_mismatches = 0

    def _frame(self, f):
        self.frames_ok += 1
        b1 = f[1]
        if b1 == 0x86:
            gas = f[4]
            dec = f[5]
            conc = (f[2] << 8) | f[3]
            unit = UNIT_PPM
            if gas == 0 and dec == 0:
                dec = self._legacy           # old reply layout: no gas code, no decimals byte
            elif gas != self.gas_code:
                self.gas_mismatches += 1
                self.seen |= SEEN_FAULT
                return 0
            self.temp_raw = (f[6] << 8) | f[7]
        elif b1 == self.gas_code:            # active upload: FF gas unit decimals concH concL rangeH rangeL
            self._active_seen = self.qa
            unit = f[2]
            dec = f[3]
            conc = (f[4] << 8) | f[5]
            if unit != UNIT_PPM and unit != UNIT_PPB:
                self.seen |= SEEN_FAULT
                return 0
        else:
            return 0                         # mode-switch ack (FF 78 01 ...)
        if self._decimals is not None:
            dec = self._decimals
        if dec > 3:
            self.seen |= SEEN_FAULT
            return 0
        den = _POW10[dec]
        if unit == UNIT_PPB:
            den *= 1000
        self.conc_raw = conc
        self.decimals = dec
        self.unit = unit
        self.value = (conc * self._per_ppm + den // 2) // den    # in wire units of self.ch
        # out of range: conc > range_ppm, compared in raw units (integers only)
        self.over = conc > self.range_ppm * den
        self.seen |= SEEN_GOOD
        return 1
