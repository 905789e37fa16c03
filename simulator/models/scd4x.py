"""Sensirion SCD40/SCD41 CO2 sensor on I2C 0x62 (docs/sensors/scd4x.md; command codes and
execution times from Sensirion embedded-i2c-scd4x).

Modelled: idle and periodic-measurement states; 21 B1 start periodic (5 s) and 21 AC low power
periodic (30 s), 3F 86 stop (500 ms during which the sensor NACKs everything), E4 B8 data ready
(word 0x8006 = new data, 0x8000 = none: the flag is the low 11 bits, the upper ones are not
part of it), EC 05 read measurement (9 bytes; NACK when there is nothing new, the buffer is
emptied by the read), E0 00 set/get ambient pressure (allowed while measuring), 24 1D set
temperature offset, 24 27 altitude, 36 82 serial, 20 2F variant, 36 F6 wake up, 36 E0 power down.
Configuration commands other than ambient pressure are NACKed during periodic measurement, as
the datasheet says they are not allowed then. Arguments carry a CRC per word; a bad one is NACKed.
Each command's reply becomes readable after its execution time (1 ms).

Faults: nack/silence, bad_checksum (CO2 word CRC), truncated (the RH word reads FF FF FF),
stuck, out_of_range (CO2 word 45000), warmup (data ready stays 0x8000: the sensor never has
data), slow (data every 5 s + slow seconds later).
"""

from . import I2CModel
from ._common import Faults, STATUS_OF, Values, crc8_sensirion, sensirion_words

ADDRESS = 0x62
PERIOD_S = 5.0
LOW_POWER_PERIOD_S = 30.0
STOP_S = 0.5
EXEC_S = 0.001
SERIAL = (0xF896, 0x9F07, 0x3BB4)


def t_word(temp_c):
    return max(0, min(0xFFFF, int(round((temp_c + 45.0) * 65535 / 175.0))))


def rh_word(rh_pct):
    return max(0, min(0xFFFF, int(round(rh_pct * 65535 / 100.0))))


def measurement(co2_ppm, t_raw, rh_raw):
    return sensirion_words(co2_ppm, t_raw, rh_raw)


class SCD4x(I2CModel):
    name = "scd4x"
    TRUTH_TOLERANCE = 0     # tools/verify.py: exact (the wire carries the frame's integers)
    address = ADDRESS

    def __init__(self, world=None, truth=None, seed=0, values=None, variant=0x1000):
        super().__init__()
        self.values = Values(world, values)
        self.truth = truth
        self.faults = Faults(seed)
        self.variant = variant          # 0x1000 = SCD41
        self.periodic = False
        self.period_s = PERIOD_S
        self.t_run = None
        self.busy_until = -1.0
        self.taken = 0                  # measurement periods already read
        self.pressure_hpa = 1013
        self.temp_offset_raw = 1498     # 4.0 C default
        self.altitude_m = 0
        self.asleep = False
        self._out = None
        self._out_t = 0.0
        self._stuck = None

    # -- helpers --------------------------------------------------------------------------------
    def _periods(self, t, fs=()):
        if not self.periodic or self.t_run is None:
            return 0
        dt = t - self.t_run - Faults.delay_s(fs)
        return max(0, int(dt // self.period_s))

    def _new_data(self, t):
        if "warmup" in self.faults.active:
            return False
        return self._periods(t) > self.taken

    def _reply(self, data, t):
        self._out = data
        self._out_t = t + EXEC_S

    @staticmethod
    def _args_ok(args):
        if len(args) % 3:
            return False
        return all(crc8_sensirion(args[i:i + 2]) == args[i + 2] for i in range(0, len(args), 3))

    # -- bus ------------------------------------------------------------------------------------
    def write(self, data, t):
        if "nack" in self.faults.active or "silence" in self.faults.active:
            self.count("nacks")
            return False
        if len(data) < 2 or t < self.busy_until:
            self.count("nacks")
            return False
        cmd = (data[0] << 8) | data[1]
        args = data[2:]
        if self.asleep and cmd != 0x36F6:
            self.count("nacks")
            return False
        if args and not self._args_ok(args):
            self.count("argument_crc_errors")
            return False
        self._out = None
        if cmd in (0x21B1, 0x21AC):
            if self.periodic:
                return False
            self.periodic = True
            self.period_s = PERIOD_S if cmd == 0x21B1 else LOW_POWER_PERIOD_S
            self.t_run = t
            self.taken = 0
        elif cmd == 0x3F86:
            self.periodic = False
            self.busy_until = t + STOP_S
        elif cmd == 0xE4B8:
            self._reply(sensirion_words(0x8006 if self._new_data(t) else 0x8000), t)
        elif cmd == 0xEC05:
            if self._new_data(t):
                self._reply(self._measure(t), t)
            else:
                self.count("reads_without_data")
        elif cmd == 0xE000:
            if args:
                self.pressure_hpa = (args[0] << 8) | args[1]
            else:
                self._reply(sensirion_words(self.pressure_hpa), t)
        elif self.periodic:
            self.count("nacks_while_periodic")
            return False
        elif cmd == 0x241D and args:
            self.temp_offset_raw = (args[0] << 8) | args[1]
        elif cmd == 0x2427 and args:
            self.altitude_m = (args[0] << 8) | args[1]
        elif cmd == 0x3682:
            self._reply(sensirion_words(*SERIAL), t)
        elif cmd == 0x202F:
            self._reply(sensirion_words(self.variant), t)
        elif cmd == 0x36E0:
            self.asleep = True
        elif cmd == 0x36F6:
            self.asleep = False
        else:
            self.count("unknown_commands")
            return False
        self.count("commands")
        return True

    def read(self, n, t):
        if "nack" in self.faults.active or "silence" in self.faults.active:
            self.count("nacks")
            return None
        if self._out is None or t < self._out_t:
            self.count("nacks")
            return None
        out = self._out[:n] + b"\xff" * max(0, n - len(self._out))
        self._out = None
        return out

    def _measure(self, t):
        fs = self.faults.next()
        self.taken = self._periods(t)
        slot, w = self.values.at(t)
        raw = (max(0, min(0xFFFF, int(round(float(w.get("co2_ppm", 420.0)))))),
               t_word(float(w.get("temp_c", 20.0))), rh_word(float(w.get("rh_pct", 50.0))))
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            raw = (45000 if p is True else int(p),) + raw[1:]
        if "stuck" in fs and self._stuck is not None:
            raw = self._stuck
        elif "out_of_range" not in fs:
            self._stuck = raw
        out = bytearray(measurement(*raw))
        if "bad_checksum" in fs:
            out[2] ^= 0x01
        if "truncated" in fs:
            out[6:9] = b"\xff\xff\xff"
        fault = Faults.main(fs)
        status = STATUS_OF[fault]
        if fault == "truncated":
            status = "checksum_error"
        if self.truth is not None:
            self.truth.record({"kind": self.name, "slot": slot, "t_virtual": round(t, 3),
                               "status": status, "fault": fault, "co2_ppm": raw[0],
                               "temp_c": round(-45 + 175 * raw[1] / 65535, 2),
                               "rh_pct": round(100 * raw[2] / 65535, 2)})
        return bytes(out)
