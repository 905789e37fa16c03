"""Winsen ZE08-CH2O formaldehyde module on a UART, 9600 8N1 (docs/sensors/ze08.md).

  active upload  FF 17 04 00 ppbH ppbL rangeH rangeL CS  (power-on default, one frame a second)
  Q&A reply      FF 86 ugH ugL 00 00 ppbH ppbL CS        (ug/m3 and ppb)
  commands       FF 01 78 41 .. 46 (Q&A), FF 01 78 40 .. 47 (active), FF 01 86 .. 79 (read);
                 no acknowledgement of mode switches is documented, so none is sent.
ug/m3 = ppb x 30.03 / 22.4 (HCHO at 0 C, the conversion the manual's example 42/32 uses).
Warm-up: reads 0 for warmup_s after power-on.
"""

from . import SerialModel
from ._common import WinsenModel, winsen_frame

FULL_RANGE_PPB = 5000
UGM3_PER_PPB = 30.03 / 22.4


def qa_frame(ppb, ugm3):
    return winsen_frame(0x86, ugm3 >> 8, ugm3, 0, 0, ppb >> 8, ppb)


def active_frame(ppb, full_range=FULL_RANGE_PPB):
    return winsen_frame(0x17, 0x04, 0x00, ppb >> 8, ppb, full_range >> 8, full_range)


class ZE08(WinsenModel, SerialModel):
    name = "ze08"
    TRUTH_TOLERANCE = 0     # tools/verify.py: exact (the wire carries the frame's integers)
    QA_BYTE = 0x41
    ACTIVE_BYTE = 0x40
    MODE_ACK = False
    ACTIVE_AT_POWER_ON = True

    def __init__(self, world=None, truth=None, seed=0, values=None, warmup_s=None,
                 active_period_s=1.0):
        SerialModel.__init__(self)
        self._winsen_init(world, truth, seed, values, warmup_s, active_period_s)

    def reading(self, world, warming, fs):
        ppb = 0.0 if warming else max(0.0, float(world.get("hcho_ppb", 0.0)))
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            ppb = FULL_RANGE_PPB + 1000 if p is True else float(p)
        ppb_i = min(0xFFFF, int(round(ppb)))
        return {"ppb": ppb_i, "ugm3": min(0xFFFF, int(round(ppb_i * UGM3_PER_PPB)))}

    def encode_qa(self, r):
        return qa_frame(r["ppb"], r["ugm3"])

    def encode_active(self, r):
        return active_frame(r["ppb"])

    def truth_values(self, r, qa):
        out = {"hcho_ppb": r["ppb"]}
        if qa:
            out["hcho_ugm3"] = r["ugm3"]
        return out
