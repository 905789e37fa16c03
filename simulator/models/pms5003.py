"""Plantower PMS5003 particle sensor on a UART (PMS5003 manual V2.3, appendix I; protocol page
docs/sensors/pms5003.md).

Frames are big-endian: a 32-byte data frame `42 4D 00 1C` + 13 words (PM1/PM2.5/PM10 CF=1,
PM1/PM2.5/PM10 atmospheric, counts >0.3/0.5/1.0/2.5/5/10 um per 0.1 L) + version byte + error byte
+ sum16 of bytes 0..29; 7-byte commands `42 4D CMD DH DL CSH CSL`; 8-byte acks
`42 4D 00 04 CMD DATA CSH CSL`.

Behaviour modelled: active mode at power-on (one frame a virtual second), passive mode (one frame
per read request), sleep/wake, a 30 s warm-up after power-on/wake during which the module sends
frames with an all-zero payload (the fan is spinning up), and the shared faults of
simulator/models/_common.py (self.faults): a truncated answer keeps its first 20 bytes, garbage
never holds 0x42 (the frame's first byte), out_of_range reports PM mass words above 1000 ug/m3.
"""

from . import SerialModel, slot_of
from ._common import STATUS_OF, Faults, SensorModel, header_commands

HEADER = b"\x42\x4d"
FRAME_LEN = 32
CMD_LEN = 7
ACK_LEN = 8

CMD_MODE = 0xE1    # data 0 = passive, 1 = active
CMD_READ = 0xE2    # passive read
CMD_SLEEP = 0xE4   # data 0 = sleep, 1 = wake

# Frame word order (bytes 4..29); names as in firmware/wire.py.
FIELDS = ("pm1_cf1_ugm3", "pm25_cf1_ugm3", "pm10_cf1_ugm3", "pm1_ugm3", "pm25_ugm3", "pm10_ugm3",
          "n03_per_dl", "n05_per_dl", "n10_per_dl", "n25_per_dl", "n50_per_dl", "n100_per_dl")
# (12 words; the 13th word holds the version and error bytes)

DEFAULT_VERSION = 0x97   # as in the PyPMS capture (docs/sensors/pms5003.md, capture 1)
WARMUP_S = 30.0          # ESPHome PMS_STABILISING_MS = 30000; fan spin-up after power-on/wake
OUT_OF_RANGE_UGM3 = 1000  # docs/sensors/pms5003.md: PM2.5 > 1000 ug/m3 is flagged
TRUNCATED_BYTES = 20     # what a truncated answer keeps


def sum16(b):
    return sum(b) & 0xFFFF


def command(cmd, data=0):
    """7-byte command frame."""
    body = bytes((0x42, 0x4D, cmd, (data >> 8) & 0xFF, data & 0xFF))
    cs = sum16(body)
    return body + bytes((cs >> 8, cs & 0xFF))


def ack(cmd, data):
    """8-byte acknowledgement of a mode/sleep command, e.g. 42 4D 00 04 E1 00 01 74."""
    body = bytes((0x42, 0x4D, 0x00, 0x04, cmd, data & 0xFF))
    cs = sum16(body)
    return body + bytes((cs >> 8, cs & 0xFF))


def data_frame(values, version=DEFAULT_VERSION, error=0):
    """32-byte data frame from a dict of the 12 FIELDS (integers 0..65535)."""
    b = bytearray(FRAME_LEN)
    b[0:4] = b"\x42\x4d\x00\x1c"
    for i, k in enumerate(FIELDS):
        v = int(values[k])
        if not 0 <= v <= 0xFFFF:
            raise ValueError("%s=%r does not fit a frame word" % (k, v))
        b[4 + 2 * i] = v >> 8
        b[5 + 2 * i] = v & 0xFF
    b[28] = version
    b[29] = error
    cs = sum16(b[:30])
    b[30] = cs >> 8
    b[31] = cs & 0xFF
    return bytes(b)


def decode_frame(b):
    """Host reference decoder of one 32-byte data frame (for tests and tools). Raises ValueError
    with "header", "length", "truncated" or "checksum"."""
    if len(b) < 4 or b[0:2] != HEADER:
        raise ValueError("header")
    n = (b[2] << 8) | b[3]
    if n != FRAME_LEN - 4:
        raise ValueError("length")
    if len(b) < FRAME_LEN:
        raise ValueError("truncated")
    if sum16(b[:30]) != ((b[30] << 8) | b[31]):
        raise ValueError("checksum")
    out = {k: (b[4 + 2 * i] << 8) | b[5 + 2 * i] for i, k in enumerate(FIELDS)}
    out["version"] = b[28]
    out["error_code"] = b[29]
    return out


def reading_from_world(ch):
    """The integers a PMS5003 reports for the true field values `ch` (world.PollutionField.at).

    The atmospheric (ATM) mass equals CF=1 below about 30 ug/m3 (see the captures in
    docs/sensors/pms5003.md); above, CF=1 reads higher (factory calibration dust), modelled as 1.5x the excess.
    """
    r = {}
    for size in ("pm1", "pm25", "pm10"):
        atm = max(0, int(round(ch[size + "_ugm3"])))
        r[size + "_ugm3"] = atm
        r[size + "_cf1_ugm3"] = atm if atm <= 30 else int(round(30 + 1.5 * (atm - 30)))
    for k in ("n03_per_dl", "n05_per_dl", "n10_per_dl", "n25_per_dl", "n50_per_dl", "n100_per_dl"):
        r[k] = max(0, int(round(ch[k])))
    return {k: min(0xFFFF, v) for k, v in r.items()}


class PMS5003(SensorModel, SerialModel):
    """A PMS5003 riding on the patrol vehicle.

    world: simulator.world.World; truth: GroundTruth or None; seed: the faults' random stream.
    Counters: frames_sent, acks_sent, reads_answered, commands_ok, command_checksum_errors,
    unknown_commands, reads_ignored (active mode or asleep), bytes_ignored, faults_<name>.
    """

    name = "pms5003"
    TRUTH_TOLERANCE = 0     # tools/verify.py: exact (the wire carries the frame's integers)

    def __init__(self, world, truth=None, seed=0, warmup_s=WARMUP_S, active_period_s=1.0,
                 version=DEFAULT_VERSION):
        SerialModel.__init__(self)
        self._sensor_init(world, truth, seed, None, warmup_s, active_period_s)
        self.version = version
        self._rx = bytearray()
        self.passive = False       # power-on default: active mode
        self.asleep = False

    # -- control ----------------------------------------------------------------------------
    def start(self, t):
        self.t_on = t
        self.asleep = False
        self.passive = False
        self._next_active = t + self.active_period_s

    # -- output -----------------------------------------------------------------------------
    def _values(self, slot, t, fs=()):
        if self.warming_up(t, fs):
            return {k: 0 for k in FIELDS}, True
        _, ch = self.values.at(slot)
        return reading_from_world(ch), False

    def tick(self, t):
        while self._next_active is not None and self._next_active <= t:
            ta = self._next_active
            if not self.passive and not self.asleep:
                values, _ = self._values(slot_of(ta), ta)
                self.emit(ta, data_frame(values, self.version))
                self.count("frames_sent")
            self._next_active = ta + self.active_period_s

    def next_tick(self):
        if self.passive or self.asleep:
            return None
        return self._next_active

    def _answer(self, t):
        slot = slot_of(t)
        fs = self.faults.next()
        values, warming = self._values(slot, t, fs)
        for f in fs:
            self.count("faults_" + f)
        if "stuck" in fs and self._stuck is not None and not warming:
            values = dict(self._stuck)
        if "out_of_range" in fs:
            # A failing laser/photodiode reads absurdly high mass concentrations.
            p = fs["out_of_range"]
            hi = (1200, 1500, 1800) if p is True else (int(p),) * 3
            values.update(pm1_ugm3=hi[0], pm25_ugm3=hi[1], pm10_ugm3=hi[2], pm1_cf1_ugm3=hi[0],
                          pm25_cf1_ugm3=hi[1], pm10_cf1_ugm3=hi[2])
        elif not warming and "stuck" not in fs:
            self._stuck = dict(values)
        out = self.faults.mangle(data_frame(values, self.version), FRAME_LEN - 1, fs,
                                 keep=TRUNCATED_BYTES, avoid=0x42)
        delay = Faults.delay_s(fs)
        if out:
            self.emit(t + delay, out)
            self.count("reads_answered")
        fault = Faults.main(fs)
        status = STATUS_OF[fault]
        if warming and status in ("ok", "out_of_range"):
            status = "warming_up"
        rec = {"kind": "pms5003", "slot": slot, "t_virtual": round(t, 3), "status": status,
               "fault": fault}
        if fault != "silence":
            rec.update(values)
        if delay:
            rec["late_by_s"] = delay
        if self.truth is not None:
            self.truth.record(rec)

    # -- input ------------------------------------------------------------------------------
    def receive(self, data, t):
        self._rx += data
        for f in header_commands(self, self._rx, HEADER, CMD_LEN,
                                 lambda f: sum16(f[:5]) == (f[5] << 8) | f[6]):
            self._command(f[2], (f[3] << 8) | f[4], t)

    def _command(self, cmd, dat, t):
        if cmd == CMD_MODE and dat in (0, 1):
            self.count("commands_ok")
            self.passive = dat == 0
            self.emit(t, ack(cmd, dat))
            self.count("acks_sent")
            if not self.passive:
                self._next_active = t + self.active_period_s
        elif cmd == CMD_READ and dat == 0:
            self.count("commands_ok")
            if self.passive and not self.asleep:
                self._answer(t)
            else:
                self.count("reads_ignored")
        elif cmd == CMD_SLEEP and dat == 0:
            self.count("commands_ok")
            self.emit(t, ack(cmd, 0))   # the ack goes out before the fan stops
            self.count("acks_sent")
            self.asleep = True
        elif cmd == CMD_SLEEP and dat == 1:
            self.count("commands_ok")
            if self.asleep:
                # No ack to a wake: the module restarts its fan and warms up again.
                self.asleep = False
                self.t_on = t
                self._next_active = t + self.active_period_s
        else:
            self.count("unknown_commands")
