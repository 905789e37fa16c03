"""Pieces shared by the sensor models of pms5003, sds011, mhz19b, ze03, ze08, scd4x, sht3x, sht4x
and modbus_noise: fault injection, the world's value of a channel, and the byte-level helpers
(checksums written independently of the firmware's, so a model never borrows the code it tests).

A model holds a Faults object as `self.faults`; tests and the simulator's fault schedule switch
faults on and off:

    m.faults.set("bad_checksum")          # every answer until cleared
    m.faults.set("slow", 2.5)             # answers 2.5 virtual seconds late
    m.faults.set("garbage", 7)            # 7 noise bytes before every frame
    m.faults.set("stuck")                 # the reading freezes at its current value
    m.faults.set("out_of_range", 99999)   # report this raw reading instead of the world's
    m.faults.set("warmup")                # behave as during warm-up (whatever that looks like)
    m.faults.set("silence")               # no output at all (module unplugged, dead UART)
    m.faults.set("truncated")             # frames cut short (line glitch, module reset mid-frame)
    m.faults.set("nack")                  # I2C: NACK every transfer
    m.faults.inject("bad_checksum", n=3)  # only the next 3 answers
    m.faults.set_rate("slow", 0.05, 7.0)  # each answer with probability 0.05, 7 s late
    m.faults.clear()                      # back to normal

Each answer takes `fs = faults.next()`; frame-level faults are applied by mangle(frame,
cs_index, fs), value-level ones (stuck, out_of_range, warmup) by each model where it computes its
reading. STATUS_OF says what a correct firmware reports for the answer (ground truth).
"""

import random

MODES = ("bad_checksum", "truncated", "garbage", "stuck", "silence", "slow", "warmup",
         "out_of_range", "nack")

# What a correct firmware reports for an answer carrying each fault (ground-truth "status").
# stuck and garbage are not detectable by a driver.
STATUS_OF = {None: "ok", "bad_checksum": "checksum_error", "truncated": "no_data",
             "garbage": "ok", "stuck": "ok", "silence": "no_data", "slow": "no_data",
             "warmup": "warming_up", "out_of_range": "out_of_range", "nack": "no_data"}
_PRIORITY = ("silence", "nack", "slow", "truncated", "bad_checksum", "warmup", "out_of_range",
             "stuck", "garbage")


class Faults:
    def __init__(self, seed=0):
        self.active = {}             # persistent faults: mode -> parameter
        self.rates = {}              # random faults: mode -> (probability per answer, parameter)
        self._forced = []            # one-shot faults for the next answers
        self._rng = random.Random("faults:%s" % seed)
        self.injected = {}           # mode -> answers it changed

    def set(self, mode, param=True):
        self._check(mode)
        self.active[mode] = param

    def set_rate(self, mode, p, param=True):
        """Give each answer the fault `mode` with probability p (seeded: runs repeat)."""
        self._check(mode)
        self.rates[mode] = (float(p), param)

    def inject(self, mode, n=1, param=True):
        """Apply `mode` to the next n answers only."""
        self._check(mode)
        self._forced.extend([(mode, param)] * n)

    def clear(self, mode=None):
        if mode is None:
            self.active.clear()
            self._forced.clear()
            self.rates.clear()
        else:
            self.active.pop(mode, None)
            self.rates.pop(mode, None)

    @staticmethod
    def _check(mode):
        if mode not in MODES:
            raise ValueError("unknown fault %r (one of %s)" % (mode, ", ".join(MODES)))

    def next(self):
        """The faults of the next answer: dict mode -> parameter (True when none was given)."""
        fs = dict(self.active)
        for m, (p, prm) in self.rates.items():
            if self._rng.random() < p:
                fs[m] = prm
                break                # at most one random fault per answer
        if self._forced:
            m, prm = self._forced.pop(0)
            fs[m] = prm
        for m in fs:
            self.injected[m] = self.injected.get(m, 0) + 1
        return fs

    def on(self, mode):
        return mode in self.active

    @staticmethod
    def param(fs, mode, default):
        v = fs.get(mode, default)
        return default if v is True else v

    @staticmethod
    def main(fs):
        """The fault that decides the expected status (None if the answer is clean)."""
        for m in _PRIORITY:
            if m in fs:
                return m
        return None

    @staticmethod
    def delay_s(fs):
        """Extra answer latency in virtual seconds (fault "slow", default 2 s)."""
        return float(Faults.param(fs, "slow", 2.0)) if "slow" in fs else 0.0

    def mangle(self, frame, cs_index, fs, keep=None, avoid=None):
        """Apply the frame-level faults of `fs` to one outgoing frame; None means send nothing.
        keep: the bytes a truncated frame keeps (default half); avoid: a byte the garbage never
        holds (a model whose tests need garbage that cannot start a frame)."""
        if "silence" in fs:
            return None
        out = bytearray(frame)
        if "bad_checksum" in fs:
            out[cs_index] ^= 0x01
        if "truncated" in fs:
            out = out[: max(1, len(out) // 2 if keep is None else keep)]
        if "garbage" in fs:
            n = int(self.param(fs, "garbage", 5))
            junk = bytearray()
            while len(junk) < n:
                b = self._rng.getrandbits(8)
                if b != avoid:
                    junk.append(b)
            out = junk + out
        return bytes(out)


# --- world values ---------------------------------------------------------------------------------

class Values:
    """The true value of channels at a virtual time: from the world (at the 10 s slot, see
    simulator.models.slot_of) or, without a world, from `fixed` (tests set it directly)."""

    def __init__(self, world=None, fixed=None):
        self.world = world
        self.fixed = dict(fixed or {})
        self._slot = None
        self._cache = None

    def at(self, t):
        from . import slot_of
        s = slot_of(t)
        if self.world is None:
            return s, self.fixed
        if s != self._slot:
            self._slot = s
            self._cache = self.world.channels_at_vehicle(s)[1]
        return s, self._cache


class SensorModel:
    """What the serial sensor models share besides their frames (a mixin beside SerialModel):
    the true values, the ground truth, the faults, the warm-up after power-on or wake (t_on)
    and the time of the next frame in active mode."""

    def _sensor_init(self, world, truth, seed, values, warmup_s, active_period_s):
        self.values = Values(world, values)
        self.truth = truth
        self.faults = Faults(seed)
        self.warmup_s = warmup_s
        self.active_period_s = active_period_s
        self.t_on = None             # virtual time of the last power-on or wake
        self._next_active = None     # the next active-mode frame
        self._stuck = None           # the last reading outside warm-up (fault "stuck")

    def warming_up(self, t, fs=()):
        return "warmup" in fs or self.t_on is None or t < self.t_on + self.warmup_s


# --- checksums (independent of firmware/drivers/checksums.py) ------------------------------------

def winsen_cs(frame8):
    """Checksum byte of a Winsen frame given bytes 0..7."""
    return (-sum(frame8[1:8])) & 0xFF


def winsen_frame(b1, b2, b3, b4, b5, b6, b7):
    f = bytes((0xFF, b1 & 0xFF, b2 & 0xFF, b3 & 0xFF, b4 & 0xFF, b5 & 0xFF, b6 & 0xFF, b7 & 0xFF))
    return f + bytes((winsen_cs(f),))


def winsen_ok(frame9):
    return len(frame9) == 9 and frame9[0] == 0xFF and sum(frame9[1:9]) & 0xFF == 0


def crc8_sensirion(data):
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def sensirion_words(*words):
    out = bytearray()
    for w in words:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((hi, lo, crc8_sensirion((hi, lo))))
    return bytes(out)


def crc16_modbus(data):
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def modbus_frame(body):
    c = crc16_modbus(body)
    return bytes(body) + bytes((c & 0xFF, c >> 8))


def header_commands(model, rx, header, length, ok):
    """The commands held in `rx` (the model's receive bytearray, consumed): each `length` bytes
    starting with the 2-byte `header` that ok(command) accepts, in order. Bytes before a header
    are counted in the model's bytes_ignored, a trailing first header byte is kept (it may be
    the first half of one), and a command ok() rejects is counted in command_checksum_errors,
    the search going on one byte further (the real command may start inside it)."""
    while True:
        i = rx.find(header)
        if i < 0:
            keep = 1 if rx[-1:] == header[:1] else 0
            model.count("bytes_ignored", len(rx) - keep)
            del rx[:len(rx) - keep]
            return
        if i:
            model.count("bytes_ignored", i)
            del rx[:i]
        if len(rx) < length:
            return
        f = bytes(rx[:length])
        if not ok(f):
            model.count("command_checksum_errors")
            del rx[:1]
            continue
        del rx[:length]
        yield f


class FrameReader:
    """Assembles fixed-length command frames from the host's byte stream, resynchronising on a
    start byte. Bytes that do not start a frame are counted by the model as ignored."""

    def __init__(self, length, start):
        self.length = length
        self.start = start
        self.buf = bytearray()

    def feed(self, data):
        """Yield (frame or None, skipped byte count) for each complete candidate frame."""
        for b in data:
            if not self.buf and b != self.start:
                yield None, 1
                continue
            self.buf.append(b)
            if len(self.buf) == self.length:
                f = bytes(self.buf)
                self.buf.clear()
                yield f, 0


# --- Winsen 9-byte UART modules (MH-Z19B, ZE03, ZE08) ---------------------------------------------

class WinsenModel(SensorModel):
    """Behaviour shared by Winsen modules: 9-byte commands `FF 01 CMD d1..d5 CS`, the read command
    0x86 answered with `FF 86 ...`, mode switch 0x78 between Q&A and active upload (one frame per
    virtual second), warm-up after power-on, faults, ground truth per answer.

    A subclass (also deriving from simulator.models.SerialModel) sets name, QA_BYTE/ACTIVE_BYTE
    (the 0x78 command's data byte; None = no such mode), MODE_ACK, ACTIVE_AT_POWER_ON, and
    implements reading(world_values, warming, fs) -> dict, encode_qa(reading),
    encode_active(reading), truth_values(reading, qa).
    """

    QA_BYTE = None
    ACTIVE_BYTE = None
    MODE_ACK = False
    ACTIVE_AT_POWER_ON = False
    RESPONSE_S = 0.05           # virtual seconds between the request and the answer
    WARMUP_S = 180.0

    def _winsen_init(self, world, truth, seed, values, warmup_s, active_period_s):
        self._sensor_init(world, truth, seed, values,
                          self.WARMUP_S if warmup_s is None else warmup_s, active_period_s)
        self._reader = FrameReader(9, 0xFF)
        self.active = False

    def start(self, t):
        self.t_on = t
        self.active = self.ACTIVE_AT_POWER_ON
        self._next_active = t + self.active_period_s if self.active else None

    def receive(self, data, t):
        for f, skipped in self._reader.feed(data):
            if f is None:
                self.count("bytes_ignored", skipped)
            elif not winsen_ok(f):
                self.count("command_checksum_errors")
            elif f[1] != 0x01:
                self.count("unknown_commands")
            else:
                self._command(f, t)

    def _command(self, f, t):
        cmd = f[2]
        if cmd == 0x86:
            self.count("reads")
            self._answer(t, True)
        elif cmd == 0x78 and self.QA_BYTE is not None and f[3] in (self.QA_BYTE, self.ACTIVE_BYTE):
            self.count("mode_commands")
            self.active = f[3] == self.ACTIVE_BYTE
            self._next_active = t + self.active_period_s if self.active else None
            if self.MODE_ACK:
                self.emit(t + self.RESPONSE_S, winsen_frame(0x78, 0x01, 0, 0, 0, 0, 0))
        elif not self.other_command(f, t):
            self.count("unknown_commands")

    def other_command(self, f, t):
        return False

    def tick(self, t):
        while self._next_active is not None and self._next_active <= t:
            ta = self._next_active
            self._next_active = ta + self.active_period_s
            self._answer(ta, False)

    def next_tick(self):
        return self._next_active if self.active else None

    def _answer(self, t, qa):
        fs = self.faults.next()
        slot, world = self.values.at(t)
        warming = self.warming_up(t, fs)
        r = self.reading(world, warming, fs)
        if "stuck" in fs and self._stuck is not None:
            r = dict(self._stuck)
        elif not warming and "out_of_range" not in fs:
            self._stuck = dict(r)
        frame = self.encode_qa(r) if qa else self.encode_active(r)
        out = self.faults.mangle(frame, 8, fs)
        if out:
            self.emit(t + self.RESPONSE_S + Faults.delay_s(fs), out)
            self.count("answers" if qa else "frames_sent")
        fault = Faults.main(fs)
        status = STATUS_OF[fault]
        if warming and status in ("ok", "out_of_range"):
            status = "warming_up"
        if self.truth is not None:
            rec = {"kind": self.name, "slot": slot, "t_virtual": round(t, 3), "status": status,
                   "fault": fault, "mode": "qa" if qa else "active"}
            if fault != "silence":
                rec.update(self.truth_values(r, qa))
            self.truth.record(rec)
        return r
