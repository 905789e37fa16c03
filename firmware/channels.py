# The wire format's channels and statuses by name (firmware/wire.py has the format and the
# indices). Apart from wire.py so the box holds these strings only while it needs them: when it
# compiles a configuration (firmware/sampler.py Applied, firmware/config.py) and on the host.
# wire.CHANNELS and wire.STATUS_NAMES read them from here.

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
