# Sensirion SHT4x (SHT40/41/45) temperature and humidity on I2C. Protocol page: docs/sensors/sht4x.md.
# 8-bit commands: measure high precision 0xFD (max 8.3 ms), medium 0xF6 (4.5 ms), low 0xE0
# (1.6 ms); soft reset 0x94. Reply: [T_H T_L CRC] [RH_H RH_L CRC], Sensirion CRC-8 per word.
#   T = -45 + 175 * S_T / 65535 C;  RH = -6 + 125 * S_RH / 65535 %, cropped to 0..100 (datasheet)
# The single-shot cycle is firmware/drivers/sensirion.py's SHT.
# cfg: {"address": 0x44, "precision": "high"|"medium"|"low", "timeout_ms": 100}
# Wire values: temp_c x100, rh_pct x100, computed in integers without bigints on 32-bit ports.

from .sensirion import SHT

# precision -> (measure command, ms the driver waits before reading)
_PRECISION = {"high": (b"\xfd", 9), "medium": (b"\xf6", 5), "low": (b"\xe0", 2)}


class SHT4x(SHT):
    """Sensirion SHT4x: temp_c x100 into CH_TEMP, rh_pct x100 into CH_RH."""

    def __init__(self, i2c, cfg=None):
        cfg = cfg or {}
        # soft reset 0x94; RH in hundredths of a percent = -600 + 12500 * S / 65535
        SHT.__init__(self, i2c, cfg, b"\x94", _PRECISION[cfg.get("precision", "high")], -600, 12500)
