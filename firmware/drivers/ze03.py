# Winsen ZE03 electrochemical gas module (O3, NO2, SO2, CO ...) on a UART, 9600 8N1.
# Protocol card: sensors.md A.5. 9-byte frames, byte 0 = 0xFF, Winsen negated-sum checksum.
#
# One instance per module (per gas); cfg picks the gas and its scaling:
#   {"gas": "o3"|"no2"|"so2"|"co",      which module this is (gas code checked in every frame)
#    "channel": wire.CH_*,                optional, default from the gas
#    "decimals": None|0|1|2|3,            None: take the decimals byte of each frame (default)
#    "legacy_decimals": 0|1|2,            decimals for the old reply layout without gas/decimals bytes
#    "range_ppm": int,                    above it: out_of_range (value kept)
#    "warmup_ms": int, "timeout_ms": int, "mode": "qa"|"active"}
#
# What public sources leave uncertain and how this driver handles it:
# - Scaling differs between module firmware versions: the DFRobot-style reply carries the gas
#   code (byte 4) and a decimals byte (byte 5) and that is what we decode by default; uRADMonitor
#   hard-codes x0.01 for O3/NO2/SO2, fega's library x0.1. A reply whose gas and decimals bytes are
#   both 0 is taken as the old layout and scaled with cfg "legacy_decimals" (default: fega's x0.1
#   for O3/NO2/SO2, x1 for CO). cfg "decimals" forces a fixed resolution for modules whose
#   decimals byte turns out to be wrong on a reference-gas check.
# - The ZE03 active-upload layout is documented only for ZE08/ZE25 (FF gas unit decimals concH
#   concL rangeH rangeL CS); we parse it in that layout with unit 0x04 = ppb and 0x02 = ppm and
#   report any other unit code as sensor_error rather than guess.
# - A frame with the wrong gas code (module swapped between sockets) is sensor_error, not a value.
# - Warm-up: the card only says "minutes" for electrochemical stabilisation; default 180 s,
#   configurable.
# The box keeps the module in Q&A mode (one read per sample). A module that rebooted comes back
# in active upload; its frames are used too and the Q&A command is sent again on the next request.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from .. import wire
from .qauart import QAUART
from ..compat import ticks_diff

_FRAME = const(9)
_RX = const(16)

CMD_QA_MODE = b"\xff\x01\x78\x04\x00\x00\x00\x00\x83"
CMD_ACTIVE_MODE = b"\xff\x01\x78\x03\x00\x00\x00\x00\x84"
CMD_READ = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"

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


class ZE03(QAUART):
    """Winsen ZE03 single-gas module. Value in the gas channel's unit (ppb for O3/NO2/SO2, ppm x10 for CO)."""

    WARMUP_MS = 180000

    def __init__(self, uart, cfg=None):
        cfg = cfg or {}
        self._uart = uart
        self.gas = cfg.get("gas", "co")
        code, ch, per_ppm, legacy, rng = GASES[self.gas]
        self.gas_code = code
        self.ch = cfg.get("channel", ch)
        self.CHANNELS = (self.ch,)
        self._per_ppm = per_ppm
        self._decimals = cfg.get("decimals", None)
        self._legacy = cfg.get("legacy_decimals", legacy)
        self.range_ppm = cfg.get("range_ppm", rng)
        self.WARMUP_MS = cfg.get("warmup_ms", ZE03.WARMUP_MS)
        self.timeout_ms = cfg.get("timeout_ms", 1000)
        self.qa = cfg.get("mode", "qa") == "qa"
        self._f = bytearray(_FRAME)
        self._p = 0
        self._rx = bytearray(_RX)
        # last good reading
        self.conc_raw = 0
        self.decimals = 0
        self.unit = UNIT_PPM
        self.temp_raw = 0            # board temperature word of the DFRobot-style reply (unscaled)
        self.value = 0               # in wire units of self.ch
        self._t0 = 0
        self._started = False
        self._req_t = 0
        self._pending = False
        self._fresh = False          # good reading since the last request
        self._bad = False            # checksum error since the last request
        self._fault = False          # frame for another gas / unknown unit since the last request
        self._active_seen = False
        self.frames_ok = 0
        self.checksum_errors = 0
        self.bytes_skipped = 0
        self.timeouts = 0
        self.gas_mismatches = 0
        self.mode_resends = 0

    # -- contract -------------------------------------------------------------------------------
    def start(self, now_ms):
        self._t0 = now_ms
        self._started = True
        self._write(CMD_QA_MODE if self.qa else CMD_ACTIVE_MODE)

    def request(self, now_ms):
        if not self._started:
            self.start(now_ms)
        self.poll(now_ms)            # consume what is already there (a flush that keeps counting)
        self._fresh = False
        self._bad = False
        self._fault = False
        self._pending = True
        self._req_t = now_ms
        if self.qa:
            if self._active_seen:    # module rebooted into active upload: ask for Q&A again
                self._active_seen = False
                self.mode_resends += 1
                self._write(CMD_QA_MODE)
            self._write(CMD_READ)

    def ready(self):
        return self._fresh or self._bad or self._fault

    def fill(self, sample, now_ms):
        ch = self.ch
        if self._pending and not self.ready():
            self._pending = False
            self.timeouts += 1
        if not self._started or ticks_diff(now_ms, self._t0) < self.WARMUP_MS:
            sample.set(ch, wire.STATUS_WARMING_UP)
        elif self._fresh:
            # out of range: conc > range_ppm, compared in raw units (integers only)
            if self.unit == UNIT_PPB:
                lim = self.range_ppm * 1000 * _POW10[self.decimals]
            else:
                lim = self.range_ppm * _POW10[self.decimals]
            st = wire.STATUS_OUT_OF_RANGE if self.conc_raw > lim else wire.STATUS_OK
            sample.set(ch, st, self.value)
        elif self._fault:
            sample.set(ch, wire.STATUS_SENSOR_ERROR)
        elif self._bad:
            sample.set(ch, wire.STATUS_CHECKSUM_ERROR)
        else:
            sample.set(ch, wire.STATUS_NO_DATA)

    # -- framing --------------------------------------------------------------------------------
    def _b1_ok(self, b):
        return b == 0x86 or b == self.gas_code or b == 0x78

    def _resync(self):
        # drop the first byte, then until the buffer starts like a frame again
        self._drop(1)
        f = self._f
        while self._p and not (f[0] == 0xFF and (self._p < 2 or self._b1_ok(f[1]))):
            self._drop(1)

    def _byte(self, b):
        f = self._f
        p = self._p
        if p == 0 and b != 0xFF:
            self.bytes_skipped += 1
            return 0
        f[p] = b
        p += 1
        self._p = p
        if p == 2 and not self._b1_ok(b):
            self._resync()
            return 0
        if p < _FRAME:
            return 0
        s = 0
        for i in range(1, _FRAME):
            s += f[i]
        if s & 0xFF:
            self.checksum_errors += 1
            self._bad = True
            self._resync()
            return 0
        self._p = 0
        self.frames_ok += 1
        return self._frame(f)

    def _frame(self, f):
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
                self._fault = True
                return 0
            self.temp_raw = (f[6] << 8) | f[7]
        elif b1 == self.gas_code:            # active upload: FF gas unit decimals concH concL rangeH rangeL
            self._active_seen = self.qa
            unit = f[2]
            dec = f[3]
            conc = (f[4] << 8) | f[5]
            if unit != UNIT_PPM and unit != UNIT_PPB:
                self._fault = True
                return 0
        else:
            return 0                         # mode-switch ack (FF 78 01 ...)
        if self._decimals is not None:
            dec = self._decimals
        if dec > 3:
            self._fault = True
            return 0
        den = _POW10[dec]
        if unit == UNIT_PPB:
            den *= 1000
        self.conc_raw = conc
        self.decimals = dec
        self.unit = unit
        self.value = (conc * self._per_ppm + den // 2) // den
        self._fresh = True
        return 1
