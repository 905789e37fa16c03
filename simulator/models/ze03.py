"""Winsen ZE03 electrochemical gas module (O3, NO2, SO2, CO) on a UART, 9600 8N1
(protocol page docs/sensors/ze03.md).

Frames (9 bytes, Winsen negated-sum checksum in byte 8):
  Q&A reply     FF 86 concH concL gas decimals tempH tempL CS   (DFRobot-style layout; conc in
                units of 10^-decimals ppm; legacy_layout=True sends gas=0 decimals=0 as older
                firmware did, the firmware then scales by its configured legacy decimals)
  active upload FF gas unit decimals concH concL rangeH rangeL CS (ZE08/ZE25 layout; assumed for
                ZE03: unit 0x04 ppb for O3/NO2/SO2, unit 0x02 ppm with `decimals` for CO)
  commands      FF 01 78 04 .. 83 (Q&A mode), FF 01 78 03 .. 84 (active), FF 01 86 .. 79 (read);
                mode switches are acknowledged with FF 78 01 00 00 00 00 00 87.
Power-on: active upload, one frame a virtual second. Warm-up: reads 0 for warmup_s.
"""

from . import SerialModel
from ._common import WinsenModel, winsen_frame

# gas -> (code, world key, world units per ppm, full range ppm, default decimals)
GASES = {
    "o3": (0x2A, "o3_ppb", 1000, 10, 2),
    "no2": (0x2C, "no2_ppb", 1000, 20, 2),
    "so2": (0x2B, "so2_ppb", 1000, 20, 2),
    "co": (0x04, "co_ppm", 1, 1000, 1),
}
UNIT_PPM = 0x02
UNIT_PPB = 0x04


def qa_frame(gas_code, conc_raw, decimals, temp_raw=0):
    return winsen_frame(0x86, conc_raw >> 8, conc_raw, gas_code, decimals, temp_raw >> 8, temp_raw)


def active_frame(gas_code, unit, decimals, conc_raw, full_range):
    return winsen_frame(gas_code, unit, decimals, conc_raw >> 8, conc_raw, full_range >> 8, full_range)


class ZE03(WinsenModel, SerialModel):
    QA_BYTE = 0x04
    ACTIVE_BYTE = 0x03
    MODE_ACK = True
    TRUTH_TOLERANCE = 1     # tools/verify.py: 1 wire LSB (the driver rounds what the frame carries)
    ACTIVE_AT_POWER_ON = True

    def __init__(self, world=None, truth=None, gas="o3", decimals=None, seed=0, values=None,
                 warmup_s=None, active_period_s=1.0, legacy_layout=False):
        SerialModel.__init__(self)
        self.gas = gas
        self.name = "ze03_" + gas
        self.code, self.key, self.per_ppm, self.range_ppm, dec = GASES[gas]
        self.decimals = dec if decimals is None else decimals
        self.legacy_layout = legacy_layout
        self._winsen_init(world, truth, seed, values, warmup_s, active_period_s)

    def reading(self, world, warming, fs):
        scale = 10 ** self.decimals
        if warming:
            ppm = 0.0
        else:
            ppm = max(0.0, float(world.get(self.key, 0.0)) / self.per_ppm)
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            ppm = self.range_ppm * 1.5 if p is True else float(p)
        conc = min(0xFFFF, int(round(ppm * scale)))
        ppb = min(0xFFFF, int(round(ppm * 1000)))
        return {"conc_raw": conc, "decimals": self.decimals, "ppb_raw": ppb}

    def encode_qa(self, r):
        if self.legacy_layout:
            return qa_frame(0, r["conc_raw"], 0)
        return qa_frame(self.code, r["conc_raw"], r["decimals"])

    def encode_active(self, r):
        if self.gas == "co":
            return active_frame(self.code, UNIT_PPM, r["decimals"], r["conc_raw"],
                                self.range_ppm * 10 ** r["decimals"])
        return active_frame(self.code, UNIT_PPB, 0, r["ppb_raw"], self.range_ppm * 1000)

    def truth_values(self, r, qa):
        """The channel value a perfect decoder gets: ppb (O3/NO2/SO2) or ppm (CO)."""
        if qa or self.gas == "co":
            v = r["conc_raw"] * self.per_ppm / 10 ** r["decimals"]
            raw = r["conc_raw"]
        else:
            v = r["ppb_raw"]
            raw = r["ppb_raw"]
        return {self.key: round(v, 4), "conc_raw": raw}
