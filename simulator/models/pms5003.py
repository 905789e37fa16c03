"""Plantower PMS5003 particle sensor on a UART (PMS5003 manual V2.3, appendix I; protocol card
reference/sensors.md A.1).

Frames are big-endian: a 32-byte data frame `42 4D 00 1C` + 13 words (PM1/PM2.5/PM10 CF=1,
PM1/PM2.5/PM10 atmospheric, counts >0.3/0.5/1.0/2.5/5/10 um per 0.1 L) + version byte + error byte
+ sum16 of bytes 0..29; 7-byte commands `42 4D CMD DH DL CSH CSL`; 8-byte acks
`42 4D 00 04 CMD DATA CSH CSL`.

Behaviour modelled: active mode at power-on (one frame a virtual second), passive mode (one frame
per read request), sleep/wake, a 30 s warm-up after power-on/wake during which the module sends
frames with an all-zero payload (the fan is spinning up), and optional faults (PMSFaults).
"""

import random
from dataclasses import dataclass, fields

from . import SerialModel, slot_of

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

DEFAULT_VERSION = 0x97   # as in the PyPMS capture (reference/sensors.md A.1 example 1)
WARMUP_S = 30.0          # ESPHome PMS_STABILISING_MS = 30000; fan spin-up after power-on/wake
OUT_OF_RANGE_UGM3 = 1000  # reference/sensors.md A.10: PM2.5 > 1000 ug/m3 is rejected


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

    The atmospheric (ATM) mass equals CF=1 below about 30 ug/m3 (see the captures in sensors.md
    A.1); above, CF=1 reads higher (factory calibration dust), modelled as 1.5x the excess.
    """
    r = {}
    for size in ("pm1", "pm25", "pm10"):
        atm = max(0, int(round(ch[size + "_ugm3"])))
        r[size + "_ugm3"] = atm
        r[size + "_cf1_ugm3"] = atm if atm <= 30 else int(round(30 + 1.5 * (atm - 30)))
    for k in ("n03_per_dl", "n05_per_dl", "n10_per_dl", "n25_per_dl", "n50_per_dl", "n100_per_dl"):
        r[k] = max(0, int(round(ch[k])))
    return {k: min(0xFFFF, v) for k, v in r.items()}


@dataclass
class PMSFaults:
    """Per-answer probabilities (0..1) of each fault; all off by default. At most one fault per
    answer, tried in field order. Ground-truth status for each (what a correct firmware reports):

    bad_checksum  the checksum is off by one              -> "checksum_error"
    truncated     only the first 20 bytes go out          -> "no_data"
    garbage       3-12 junk bytes (no 0x42) before frame  -> "ok" (a parser must resync)
    stuck         the next stuck_answers answers repeat the last values -> "ok" (undetectable)
    silence       no answer at all                        -> "no_data"
    slow          the answer comes slow_delay_s late      -> "no_data" (after the 1 s deadline)
    out_of_range  PM mass words above 1000 ug/m3          -> "out_of_range"
    """
    bad_checksum: float = 0.0
    truncated: float = 0.0
    garbage: float = 0.0
    stuck: float = 0.0
    silence: float = 0.0
    slow: float = 0.0
    out_of_range: float = 0.0
    slow_delay_s: float = 2.0
    stuck_answers: int = 30

    @classmethod
    def names(cls):
        return [f.name for f in fields(cls) if f.type in (float, "float")
                and f.name != "slow_delay_s"]


_FAULT_STATUS = {"bad_checksum": "checksum_error", "truncated": "no_data", "garbage": "ok",
                 "stuck": "ok", "silence": "no_data", "slow": "no_data",
                 "out_of_range": "out_of_range", None: "ok"}


class PMS5003(SerialModel):
    """A PMS5003 riding on the patrol vehicle.

    world: simulator.world.World; truth: GroundTruth or None; seed: fault/garbage random stream.
    Counters: frames_sent, acks_sent, reads_answered, commands_ok, command_checksum_errors,
    unknown_commands, reads_ignored (active mode or asleep), bytes_ignored, faults_<name>.
    """

    name = "pms5003"

    def __init__(self, world, truth=None, seed=0, faults=None, warmup_s=WARMUP_S,
                 active_period_s=1.0, version=DEFAULT_VERSION):
        super().__init__()
        self.world = world
        self.truth = truth
        self.faults = faults or PMSFaults()
        self.warmup_s = warmup_s
        self.active_period_s = active_period_s
        self.version = version
        self._rng = random.Random("pms5003:%s" % seed)
        self._forced = []          # fault names to apply to the next answers, in order
        self._rx = bytearray()
        self.passive = False       # power-on default: active mode
        self.asleep = False
        self.t_wake = None         # virtual time of the last power-on/wake
        self._next_active = None   # next active-mode frame time
        self._stuck_left = 0
        self._last_values = None

    # -- control ----------------------------------------------------------------------------
    def inject(self, fault, n=1):
        """Force `fault` (a PMSFaults field name) on the next n answers to read requests."""
        if fault not in PMSFaults.names():
            raise ValueError("unknown fault %r" % (fault,))
        self._forced.extend([fault] * n)

    def start(self, t):
        self.t_wake = t
        self.asleep = False
        self.passive = False
        self._next_active = t + self.active_period_s

    def warming_up(self, t):
        return self.t_wake is None or t < self.t_wake + self.warmup_s

    # -- output -----------------------------------------------------------------------------
    def _values(self, slot, t):
        if self.warming_up(t):
            return {k: 0 for k in FIELDS}, True
        _, ch = self.world.channels_at_vehicle(slot)
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

    def _pick_fault(self):
        if self._forced:
            return self._forced.pop(0)
        for name in PMSFaults.names():
            p = getattr(self.faults, name)
            if p > 0 and self._rng.random() < p:
                return name
        return None

    def _answer(self, t):
        slot = slot_of(t)
        values, warming = self._values(slot, t)
        fault = self._pick_fault()
        if fault:
            self.count("faults_" + fault)
        if fault == "stuck":
            self._stuck_left = self.faults.stuck_answers
        if self._stuck_left > 0 and self._last_values is not None and not warming:
            self._stuck_left -= 1
            values = dict(self._last_values)
        elif self._stuck_left > 0:
            self._stuck_left -= 1
        if fault == "out_of_range":
            # A failing laser/photodiode reads absurdly high mass concentrations.
            values.update(pm1_ugm3=1200, pm25_ugm3=1500, pm10_ugm3=1800, pm1_cf1_ugm3=1200,
                          pm25_cf1_ugm3=1500, pm10_cf1_ugm3=1800)
        frame = bytearray(data_frame(values, self.version))
        t_out = t
        if fault == "bad_checksum":
            frame[31] = (frame[31] + 1) & 0xFF
        elif fault == "truncated":
            frame = frame[:20]
        elif fault == "garbage":
            junk = bytes(self._rng.choice([b for b in range(256) if b != 0x42])
                         for _ in range(self._rng.randint(3, 12)))
            frame = junk + frame
        elif fault == "slow":
            t_out = t + self.faults.slow_delay_s
        if fault != "silence":
            self.emit(t_out, frame)
            self.count("reads_answered")
        if not warming and fault not in ("silence", "truncated", "out_of_range"):
            self._last_values = values
        status = _FAULT_STATUS[fault]
        if warming and status == "ok":
            status = "warming_up"
        rec = {"kind": "pms5003", "slot": slot, "t_virtual": round(t, 3), "status": status,
               "fault": fault}
        if fault != "silence":
            rec.update(values)
        if fault == "slow":
            rec["late_by_s"] = self.faults.slow_delay_s
        if self.truth is not None:
            self.truth.record(rec)

    # -- input ------------------------------------------------------------------------------
    def receive(self, data, t):
        rx = self._rx
        rx += data
        while True:
            i = rx.find(HEADER)
            if i < 0:
                # Keep a trailing 0x42: it may be the first half of a header.
                keep = 1 if rx[-1:] == b"\x42" else 0
                self.count("bytes_ignored", len(rx) - keep)
                del rx[:len(rx) - keep]
                return
            if i:
                self.count("bytes_ignored", i)
                del rx[:i]
            if len(rx) < CMD_LEN:
                return
            if sum16(rx[:5]) != ((rx[5] << 8) | rx[6]):
                self.count("command_checksum_errors")
                del rx[:1]     # resync on the next possible header
                continue
            cmd, dat = rx[2], (rx[3] << 8) | rx[4]
            del rx[:CMD_LEN]
            self._command(cmd, dat, t)

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
                self.t_wake = t
                self._next_active = t + self.active_period_s
        else:
            self.count("unknown_commands")
