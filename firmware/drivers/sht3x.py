# Sensirion SHT3x (SHT30/31/35) temperature and humidity on I2C. Protocol page: docs/sensors/sht3x.md.
# Single shot, high repeatability, no clock stretching: write 24 00, wait (max 15.5 ms), read 6
# bytes [T_H T_L CRC] [RH_H RH_L CRC]; the cycle is firmware/drivers/sensirion.py's SHT. Clock
# stretching (2C 06) is not used: not every MicroPython port's I2C tolerates a slave holding SCL
# for 15 ms.
#   T = -45 + 175 * S_T / 65535 C;  RH = 100 * S_RH / 65535 % (0..100 by construction)
# cfg: {"address": 0x44 (0x45 with ADDR high), "repeatability": "high"|"medium"|"low",
#       "timeout_ms": 100}

from .sensirion import SHT

# repeatability -> (single-shot command, ms the driver waits before reading)
_REPEAT = {"high": (b"\x24\x00", 16), "medium": (b"\x24\x0b", 7), "low": (b"\x24\x16", 5)}


class SHT3x(SHT):
    """Sensirion SHT3x: temp_c x100 into CH_TEMP, rh_pct x100 into CH_RH."""

    def __init__(self, i2c, cfg=None):
        cfg = cfg or {}
        # soft reset 30 A2; RH in hundredths of a percent = 10000 * S / 65535
        SHT.__init__(self, i2c, cfg, b"\x30\xa2", _REPEAT[cfg.get("repeatability", "high")], 0,
                     10000)
