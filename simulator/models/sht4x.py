"""Sensirion SHT4x temperature/humidity sensor on I2C 0x44 (docs/sensors/sht4x.md).

8-bit commands: FD/F6/E0 measure high/medium/low precision (8.3/4.5/1.6 ms), 89 serial number,
94 soft reset, heater+measure 39/32/2F/24/1E/15 (measurement taken after the heater pulse; the
heater warms the sensor, so T reads high and RH low, as on the real part). A read before the
conversion finished, or with nothing to read, is NACKed. Reply: [T_H T_L CRC][RH_H RH_L CRC],
S_T = (T + 45) * 65535 / 175, S_RH = (RH + 6) * 65535 / 125 (RH stays 0..100 in the world).
Faults: nack, silence (= nack), slow (conversion takes `slow` seconds longer), bad_checksum,
truncated (the second word reads FF FF FF, as an open bus does), stuck, out_of_range (T word
0xFFFF = 130 C), warmup (no effect; the part has none).
"""

from . import I2CModel
from ._common import Faults, STATUS_OF, Values, sensirion_words

ADDRESS = 0x44
MEASURE_S = {0xFD: 0.0083, 0xF6: 0.0045, 0xE0: 0.0016}
HEATER_S = {0x39: 1.1, 0x32: 0.11, 0x2F: 1.1, 0x24: 0.11, 0x1E: 1.1, 0x15: 0.11}
HEATER_DT_C = {0x39: 20.0, 0x32: 4.0, 0x2F: 11.0, 0x24: 2.5, 0x1E: 2.0, 0x15: 0.5}
SERIAL = 0x12345678


def t_word(temp_c):
    return max(0, min(0xFFFF, int(round((temp_c + 45.0) * 65535 / 175.0))))


def rh_word_sht4x(rh_pct):
    return max(0, min(0xFFFF, int(round((rh_pct + 6.0) * 65535 / 125.0))))


def reply(t_raw, rh_raw):
    return sensirion_words(t_raw, rh_raw)


class SHT4x(I2CModel):
    name = "sht4x"
    TRUTH_TOLERANCE = 1     # tools/verify.py: 1 wire LSB (the driver rounds what the frame carries)
    address = ADDRESS

    def __init__(self, world=None, truth=None, seed=0, values=None):
        super().__init__()
        self.values = Values(world, values)
        self.truth = truth
        self.faults = Faults(seed)
        self._out = None            # bytes to hand out
        self._ready_t = None        # virtual time the conversion finishes
        self._stuck = None
        self._fs = {}

    def _rh_word(self, rh):
        return rh_word_sht4x(rh)

    def write(self, data, t):
        if not data or "nack" in self.faults.active or "silence" in self.faults.active:
            self.count("nacks")
            return False
        cmd = data[0]
        if cmd in MEASURE_S or cmd in HEATER_S:
            fs = self.faults.next()     # one answer = one measurement
            if "nack" in fs or "silence" in fs:
                self.count("nacks")
                return False
            self.count("measurements")
            self._fs = fs
            self._measure(cmd, t, fs)
            self._ready_t = t + MEASURE_S.get(cmd, HEATER_S.get(cmd)) + Faults.delay_s(fs)
        elif cmd == 0x89:
            self._out = sensirion_words(SERIAL >> 16, SERIAL & 0xFFFF)
            self._ready_t = t + 0.001
        elif cmd == 0x94:
            self._out = None
            self.count("resets")
        else:
            self.count("unknown_commands")
            return False
        return True

    def _measure(self, cmd, t, fs):
        slot, w = self.values.at(t)
        temp = float(w.get("temp_c", 20.0)) + HEATER_DT_C.get(cmd, 0.0)
        rh = max(0.0, min(100.0, float(w.get("rh_pct", 50.0)) - 3.0 * HEATER_DT_C.get(cmd, 0.0)))
        raw = (t_word(temp), self._rh_word(rh))
        if "out_of_range" in fs:
            raw = (0xFFFF, raw[1])
        if "stuck" in fs and self._stuck is not None:
            raw = self._stuck
        elif "out_of_range" not in fs:
            self._stuck = raw
        out = bytearray(reply(*raw))
        if "bad_checksum" in fs:
            out[2] ^= 0x01
        if "truncated" in fs:
            out[3:6] = b"\xff\xff\xff"
        self._out = bytes(out)
        fault = Faults.main(fs)
        if self.truth is not None:
            self.truth.record({"kind": self.name, "slot": slot, "t_virtual": round(t, 3),
                               "status": STATUS_OF[fault] if fault != "truncated" else "checksum_error",
                               "fault": fault, "t_raw": raw[0], "rh_raw": raw[1],
                               "temp_c": round(-45 + 175 * raw[0] / 65535, 2),
                               "rh_pct": self.rh_pct_of(raw[1])})

    @staticmethod
    def rh_pct_of(raw):
        return round(min(100.0, max(0.0, -6 + 125 * raw / 65535)), 2)

    def read(self, n, t):
        if "nack" in self.faults.active or "silence" in self.faults.active:
            self.count("nacks")
            return None
        if self._out is None or (self._ready_t is not None and t < self._ready_t):
            self.count("nacks")
            return None
        out = self._out[:n] + b"\xff" * max(0, n - len(self._out))
        self._out = None
        return out
