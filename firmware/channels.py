# The wire format's channels and statuses by name (firmware/wire.py has the format and the
# indices). Apart from wire.py so the box holds these strings only while it needs them: when it
# compiles a configuration (compile_into below, for firmware/sampler.py Applied;
# firmware/config.py) and on the host. wire.CHANNELS and wire.STATUS_NAMES read them from here.

_SLOPE_ONE = 10000        # a slope of 1 (firmware/sampler.py Applied.apply: the same)

STATUS_NAMES = ("ok", "warming_up", "no_data", "checksum_error", "out_of_range", "not_fitted",
                "sensor_error")

# (field name with unit, scale). Wire value = round(physical value * scale).
# The index is the bit in the channel mask: append only, never reorder.
CHANNELS = (
    ("pm1_ugm3", 1),          # 0  PMS5003 atmospheric (ATM) mass concentrations
    ("pm25_ugm3", 1),         # 1
    ("pm10_ugm3", 1),         # 2
    ("co2_ppm", 1),           # 3
    ("o3_ppb", 1),            # 4
    ("no2_ppb", 1),           # 5
    ("so2_ppb", 1),           # 6
    ("co_ppm", 10),           # 7
    ("hcho_ppb", 1),          # 8
    ("noise_dba", 10),        # 9  LAeq over the sampling window
    ("temp_c", 100),          # 10
    ("rh_pct", 100),          # 11
    ("pm1_cf1_ugm3", 1),      # 12 PMS5003 CF=1 ("standard particle") mass concentrations
    ("pm25_cf1_ugm3", 1),     # 13
    ("pm10_cf1_ugm3", 1),     # 14
    ("n03_per_dl", 1),        # 15 particles > 0.3 um per 0.1 L of air
    ("n05_per_dl", 1),        # 16
    ("n10_per_dl", 1),        # 17
    ("n25_per_dl", 1),        # 18
    ("n50_per_dl", 1),        # 19
    ("n100_per_dl", 1),       # 20
    ("noise_lmin_dba", 10),   # 21
    ("noise_lmax_dba", 10),   # 22
)


def compile_into(a, cfg):
    """Compile a validated configuration (firmware/config.py) into Applied `a`
    (firmware/sampler.py) for the sampler's integer hot path: the enabled channels as a bit
    mask, a calibration as slopes x 10^4 (_SLOPE_ONE, as sampler.py's) and offsets in wire
    units, by channel index."""
    a.cfg = cfg
    a.version = cfg["version"]
    a.period_s = cfg["period_s"]
    chs = CHANNELS
    names = [c[0] for c in chs]
    mask = (1 << len(chs)) - 1
    if cfg["channels"] is not None:
        mask = 0
        for n in cfg["channels"]:
            mask |= 1 << names.index(n)
    a.enabled_mask = mask
    a.any_cal = False
    a.slope_e4 = a.offset_raw = None    # (only a box with a calibration needs them)
    if cfg["cal"]:
        a.slope_e4 = [_SLOPE_ONE] * len(chs)
        a.offset_raw = [0] * len(chs)
    for n in cfg["cal"]:
        i = names.index(n)
        c = cfg["cal"][n]
        a.slope_e4[i] = int(c["slope"] * _SLOPE_ONE + 0.5)
        o = c["offset"] * chs[i][1]
        a.offset_raw[i] = int(o + 0.5) if o >= 0 else -int(-o + 0.5)
        if a.slope_e4[i] != _SLOPE_ONE or a.offset_raw[i]:
            a.any_cal = True
