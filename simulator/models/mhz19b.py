"""Winsen MH-Z19B NDIR CO2 module on a UART, 9600 8N1 (docs/sensors/mhz19b.md).

Q&A only. Read `FF 01 86 00 00 00 00 00 79` -> `FF 86 HH LL TT SS 00 00 CS` (CO2 ppm, TT =
temperature + 40 C, SS status byte: 0 here, its meaning is undocumented). ABC on/off (0x79),
detection range (0x99), zero (0x87) and span (0x88) calibration commands are accepted (counted,
range kept) without a reply, since none is documented. During the 3 min pre-heat the module
reports a fixed 500 ppm (open-lv/air-guard: "during heating phase, it returns a value of 500").
"""

from . import SerialModel
from ._common import WinsenModel, winsen_frame

WARMUP_PPM = 500


def reply_frame(co2_ppm, temp_c=25, status=0):
    return winsen_frame(0x86, co2_ppm >> 8, co2_ppm, temp_c + 40, status, 0, 0)


class MHZ19B(WinsenModel, SerialModel):
    name = "mhz19b"
    TRUTH_TOLERANCE = 0     # tools/verify.py: exact (the wire carries the frame's integers)

    def __init__(self, world=None, truth=None, seed=0, values=None, warmup_s=None, range_ppm=5000):
        SerialModel.__init__(self)
        self._winsen_init(world, truth, seed, values, warmup_s, 1.0)
        self.range_ppm = range_ppm
        self.abc = True               # factory default: ABC on, 24 h cycle

    def other_command(self, f, t):
        cmd = f[2]
        if cmd == 0x79:
            self.abc = f[3] == 0xA0
        elif cmd == 0x99:
            self.range_ppm = (f[6] << 8) | f[7]
        elif cmd not in (0x87, 0x88):
            return False
        self.count("config_commands")
        return True

    def reading(self, world, warming, fs):
        if warming:
            ppm = WARMUP_PPM
        else:
            ppm = max(0, min(self.range_ppm, int(round(float(world.get("co2_ppm", 400.0))))))
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            ppm = self.range_ppm + 1000 if p is True else int(p)
        temp = max(-40, min(215, int(round(float(world.get("temp_c", 25.0))))))
        return {"co2_ppm": min(0xFFFF, ppm), "temp_c": temp}

    def encode_qa(self, r):
        return reply_frame(r["co2_ppm"], r["temp_c"])

    encode_active = encode_qa

    def truth_values(self, r, qa):
        return {"co2_ppm": r["co2_ppm"]}
