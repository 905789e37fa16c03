"""The standards the report applies: HJ 633—2026 (China's AQI, in force since 2026-03-01) and
GB 3096-2008 (environmental noise limits by functional zone). docs/report.md explains where and
how; nothing here is applied to a single 10 s reading.
"""

from __future__ import annotations

import math

# HJ 633—2026 table of IAQI breakpoints. Concentrations in ug/m3, CO in mg/m3. Only the PM2.5
# and PM10 columns changed from HJ 633-2012 (PM2.5 IAQI 100 at 60, was 75; PM10 at 120, was 150).
IAQI_LEVELS = (0, 50, 100, 150, 200, 300, 400, 500)
BREAKPOINTS = {
    "pm25_24h": (0, 35, 60, 115, 150, 250, 350, 500),
    "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),            # above 800: use the 24 h value
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),         # above 800: use the 1 h value
}
CATEGORIES = (  # (upper AQI, level, category, colour)
    (50, "I", "Excellent", "#00e400"),
    (100, "II", "Good", "#ffff00"),
    (150, "III", "Lightly polluted", "#ff7e00"),
    (200, "IV", "Moderately polluted", "#ff0000"),
    (300, "V", "Heavily polluted", "#99004c"),
    (10 ** 9, "VI", "Severely polluted", "#7e0023"),
)

# Gas concentrations from the box's units to the standard's: at the reference state of
# GB 3095-2012 amendment 1 (2018) for gaseous pollutants, 25 degC and 1013.25 hPa (molar volume
# 24.45 L/mol). ug/m3 per ppb (CO: mg/m3 per ppm).
MOLAR_VOLUME_L = 24.45
PER_PPB = {"so2": 64.066 / MOLAR_VOLUME_L, "no2": 46.0055 / MOLAR_VOLUME_L,
           "o3": 47.997 / MOLAR_VOLUME_L, "co": 28.010 / MOLAR_VOLUME_L}


def to_standard_units(pollutant: str, value: float) -> float:
    """pm25/pm10 (ug/m3) unchanged; so2/no2/o3 ppb -> ug/m3; co ppm -> mg/m3."""
    if pollutant in ("pm25", "pm10"):
        return value
    return value * PER_PPB[pollutant]


def _round_half_even(x: float, decimals: int = 0) -> float:
    return round(x, decimals)        # Python's round is half-even, as GB/T 8170 asks


def iaqi(column: str, conc: float) -> int | None:
    """IAQI of a concentration (standard units) on one column of the table. The concentration
    is rounded first (integers; CO one decimal), the IAQI rounded up. None where the column
    does not define it (SO2 1 h above 800, O3 8 h above 800: the caller uses the other
    window) or for a missing value. Above the top breakpoint: 500."""
    if conc is None or (isinstance(conc, float) and math.isnan(conc)):
        return None
    c = _round_half_even(conc, 1 if column.startswith("co") else 0)
    bp = BREAKPOINTS[column]
    if c < 0:
        c = 0
    if c > bp[-1]:
        return None if column in ("so2_1h", "o3_8h") else 500
    for i in range(1, len(bp)):
        if c <= bp[i]:
            lo, hi = bp[i - 1], bp[i]
            ilo, ihi = IAQI_LEVELS[i - 1], IAQI_LEVELS[i]
            return int(math.ceil((ihi - ilo) / (hi - lo) * (c - lo) + ilo - 1e-9))
    return 500


def category(aqi: int | None) -> tuple[str, str, str]:
    """(level, category, colour) of an AQI; ("", "no data", grey) for None."""
    if aqi is None:
        return ("", "no data", "#bbbbbb")
    for top, lvl, name, col in CATEGORIES:
        if aqi <= top:
            return (lvl, name, col)
    return CATEGORIES[-1][1:]


def aqi_of(iaqis: dict[str, int | None]) -> tuple[int | None, list[str]]:
    """AQI = the largest IAQI; the primary pollutant(s) when AQI > 50 (all on a tie)."""
    vals = {k: v for k, v in iaqis.items() if v is not None}
    if not vals:
        return None, []
    a = max(vals.values())
    prim = sorted(k for k, v in vals.items() if v == a) if a > 50 else []
    return a, prim


# GB 3096-2008, Table 1: LAeq limits in dB(A), (day 06-22, night 22-06), by functional zone.
NOISE_LIMITS_DBA = {"0": (50, 40), "1": (55, 45), "2": (60, 50), "3": (65, 55), "4a": (70, 55),
                    "4b": (70, 60)}
DAY_HOURS = (6.0, 22.0)


def laeq(levels_dba) -> float:
    """Energy average of sound levels: 10 log10(mean(10^(L/10)))."""
    import numpy as np
    a = np.asarray(levels_dba, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan")
    return float(10.0 * np.log10(np.mean(10.0 ** (a / 10.0))))
