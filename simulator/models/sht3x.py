"""Sensirion SHT3x temperature/humidity sensor on I2C 0x44/0x45 (docs/sensors/sht3x.md).

16-bit commands: single shot without clock stretching 24 00/0B/16 (high/medium/low
repeatability, max 15.5/6.5/4.5 ms; a read before the end is NACKed), with clock stretching
2C 06/0D/10 (the model answers at once: a real sensor holds SCL until done), soft reset 30 A2,
status F3 2D (one word), clear status 30 41, serial 36 82 / 37 80. Reply [T_H T_L CRC][RH_H RH_L CRC],
S_T = (T + 45) * 65535 / 175, S_RH = RH * 65535 / 100. Faults as for the SHT4x model.
"""

from ._common import Faults, sensirion_words
from .sht4x import SHT4x, t_word

MEASURE_S = {0x2400: 0.0155, 0x240B: 0.0065, 0x2416: 0.0045, 0x2C06: 0.0, 0x2C0D: 0.0, 0x2C10: 0.0}


def rh_word_sht3x(rh_pct):
    return max(0, min(0xFFFF, int(round(rh_pct * 65535 / 100.0))))


def reply(t_raw, rh_raw):
    return sensirion_words(t_raw, rh_raw)


class SHT3x(SHT4x):
    """Same behaviour as the SHT4x model (an I2CModel), with the SHT3x command set and RH formula."""

    name = "sht3x"
    TRUTH_TOLERANCE = 1     # tools/verify.py: 1 wire LSB (the driver rounds what the frame carries)

    def _rh_word(self, rh):
        return rh_word_sht3x(rh)

    @staticmethod
    def rh_pct_of(raw):
        return round(100 * raw / 65535, 2)

    def write(self, data, t):
        if len(data) < 2 or "nack" in self.faults.active or "silence" in self.faults.active:
            self.count("nacks")
            return False
        cmd = (data[0] << 8) | data[1]
        if cmd in MEASURE_S:
            fs = self.faults.next()
            if "nack" in fs or "silence" in fs:
                self.count("nacks")
                return False
            self.count("measurements")
            self._measure(cmd, t, fs)
            self._ready_t = t + MEASURE_S[cmd] + Faults.delay_s(fs)
        elif cmd == 0xF32D:
            self._out = sensirion_words(0x0000)
            self._ready_t = t
        elif cmd in (0x3682, 0x3780):
            self._out = sensirion_words(0x1234, 0x5678)
            self._ready_t = t + 0.001
        elif cmd in (0x30A2, 0x3041, 0x306D, 0x3066):
            self._out = None
            self.count("control_commands")
        else:
            self.count("unknown_commands")
            return False
        return True


__all__ = ["SHT3x", "reply", "rh_word_sht3x", "t_word"]
