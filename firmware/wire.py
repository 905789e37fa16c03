# envbox wire format v1: the MQTT payload of one sample, defined once.
#
# This module runs unchanged under MicroPython (the box encodes with it) and CPython (the gateway
# decodes with it). Both test suites read tests/vectors/wire.json.
#
# Why binary and not JSON: a box on an IoT SIM sends 8,640 samples a day. A JSON object with
# readable keys is 500-700 bytes per sample (about 150 MB a month with MQTT overhead); this
# encoding is about 70-90 bytes. Values are scaled integers (units and scale in the channel
# name table below), written as zig-zag varints, so small numbers cost one or two bytes and no
# value is ever clipped to fit a field. A channel's status travels with it; a channel that failed
# carries no value at all, so a failure can never be read as a number.
# For debugging, `to_json()` (host) and `envbox payload HEX` print a payload as text.
#
# Layout (big-endian):
#   u8   kind            KIND_SAMPLE (0x01)
#   u8   device id length, then that many ASCII bytes (1..32)
#   u32  seq             per-device sequence number
#   u32  t_s2020         sample time, UTC seconds since 2020-01-01T00:00:00Z (from the box's
#                        GPS-disciplined clock; this epoch keeps times in MicroPython's small
#                        integers on 32-bit boards, so stamping a sample never allocates)
#   u8   flags           FLAG_* bits
#   u8   fix_quality     GGA fix quality; 0 = no fix, and then no position fields follow
#   [if fix_quality:]
#     u8  sats           satellites used
#     u8  hdop_x10       HDOP x10, 255 = 25.5 or worse
#     i32 lat_e7         degrees x1e7, north positive
#     i32 lon_e7         degrees x1e7, east positive
#     i16 alt_dm         altitude above mean sea level, decimetres
#     u16 speed_kmh_x10  speed over ground, km/h x10
#     u16 course_x10     course over ground, degrees x10; 0xFFFF = unknown (receivers leave the
#                        course empty while the vehicle stands still)
#   u32  channel mask    bit i set = channel i is fitted and carried
#   per carried channel, in index order:
#     u8  status         STATUS_*
#     [if status has a value (ok, out_of_range):] zig-zag varint of the scaled value

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

import struct

KIND_SAMPLE = const(0x01)
SCHEMA_VERSION = const(1)

FLAG_CLOCK_FROM_GPS = const(0x01)  # the clock was last set from a GNSS fix
FLAG_CLOCK_FROM_NTP = const(0x02)  # the clock was last set from NTP
FLAG_REPLAYED = const(0x04)        # sent from the journal after an outage

# Channel status. Every channel of every sample has one; only OK and OUT_OF_RANGE carry a value.
STATUS_OK = const(0)
STATUS_WARMING_UP = const(1)
STATUS_NO_DATA = const(2)          # the module did not answer in time
STATUS_CHECKSUM_ERROR = const(3)
STATUS_OUT_OF_RANGE = const(4)     # value kept, flagged (outside the module's specified range)
STATUS_NOT_FITTED = const(5)
STATUS_SENSOR_ERROR = const(6)     # the module reported a fault

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
N_CHANNELS = const(23)

# Channel indices, for code that fills a sample.
CH_PM1 = const(0)
CH_PM25 = const(1)
CH_PM10 = const(2)
CH_CO2 = const(3)
CH_O3 = const(4)
CH_NO2 = const(5)
CH_SO2 = const(6)
CH_CO = const(7)
CH_HCHO = const(8)
CH_NOISE = const(9)
CH_TEMP = const(10)
CH_RH = const(11)
CH_PM1_CF1 = const(12)
CH_PM25_CF1 = const(13)
CH_PM10_CF1 = const(14)
CH_N03 = const(15)
CH_N05 = const(16)
CH_N10 = const(17)
CH_N25 = const(18)
CH_N50 = const(19)
CH_N100 = const(20)
CH_NOISE_LMIN = const(21)
CH_NOISE_LMAX = const(22)

EPOCH_2020_UNIX_S = const(1577836800)  # 2020-01-01T00:00:00Z in Unix seconds

COURSE_UNKNOWN = const(0xFFFF)

MAX_DEVICE_ID = const(32)
# Upper bound of one encoded sample: header + GPS + mask + every channel with a 5-byte varint.
MAX_SAMPLE_BYTES = const(2 + MAX_DEVICE_ID + 4 + 4 + 1 + 1 + 16 + 4 + N_CHANNELS * 6)


class WireError(ValueError):
    pass


def status_has_value(status):
    return status == STATUS_OK or status == STATUS_OUT_OF_RANGE


class Sample:
    """One sample, preallocated and reused by the firmware (no allocation per sample).

    Units: t_s2020 seconds since 2020-01-01 UTC; lat_e7/lon_e7 degrees x1e7; alt_dm
    decimetres; speed_kmh_x10; course_x10 degrees x10; hdop_x10. value[i] is the scaled integer of CHANNELS[i].
    """

    def __init__(self, device=b""):
        self.device = device
        self.seq = 0
        self.t_s2020 = 0
        self.flags = 0
        self.fix_quality = 0
        self.sats = 0
        self.hdop_x10 = 0
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.alt_dm = 0
        self.speed_kmh_x10 = 0
        self.course_x10 = 0
        self.status = bytearray(N_CHANNELS)
        self.value = [0] * N_CHANNELS
        self.clear_channels()

    def clear_channels(self):
        for i in range(N_CHANNELS):
            self.status[i] = STATUS_NOT_FITTED
            self.value[i] = 0

    def set(self, ch, status, value=0):
        self.status[ch] = status
        self.value[ch] = value if (status == STATUS_OK or status == STATUS_OUT_OF_RANGE) else 0


def _put_varint(buf, pos, v):
    # zig-zag, then little-endian base-128
    u = (v << 1) if v >= 0 else ((-v << 1) - 1)
    while u >= 0x80:
        buf[pos] = (u & 0x7F) | 0x80
        u >>= 7
        pos += 1
    buf[pos] = u
    return pos + 1


def encode_into(buf, s):
    """Encode Sample `s` into bytearray `buf` (at least MAX_SAMPLE_BYTES); return the length."""
    dev = s.device
    n = len(dev)
    if n < 1 or n > MAX_DEVICE_ID:
        raise WireError("device id length")
    buf[0] = KIND_SAMPLE
    buf[1] = n
    for i in range(n):
        buf[2 + i] = dev[i]
    p = 2 + n
    struct.pack_into(">IIBB", buf, p, s.seq, s.t_s2020, s.flags, s.fix_quality)
    p += 10
    if s.fix_quality:
        h = s.hdop_x10
        if h > 255:
            h = 255
        struct.pack_into(">BBiihHH", buf, p, s.sats, h, s.lat_e7, s.lon_e7, s.alt_dm,
                         s.speed_kmh_x10, s.course_x10)
        p += 16
    st = s.status
    mask = 0
    for i in range(N_CHANNELS):
        if st[i] != STATUS_NOT_FITTED:
            mask |= 1 << i
    struct.pack_into(">I", buf, p, mask)
    p += 4
    val = s.value
    for i in range(N_CHANNELS):
        c = st[i]
        if c != STATUS_NOT_FITTED:
            buf[p] = c
            p += 1
            if c == STATUS_OK or c == STATUS_OUT_OF_RANGE:
                p = _put_varint(buf, p, val[i])
    return p


def encode(s):
    """Encode to a new bytes object (host side and tests; the firmware uses encode_into)."""
    buf = bytearray(MAX_SAMPLE_BYTES)
    n = encode_into(buf, s)
    return bytes(buf[:n])


def _get_varint(data, pos, end):
    u = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 35:
            raise WireError("varint too long")
    v = (u >> 1) if not u & 1 else -((u + 1) >> 1)
    return v, pos


def decode(data):
    """Decode one payload into a dict (allocates; host side and tests).

    Raises WireError with a reason for anything that is not a well-formed v1 sample.
    """
    end = len(data)
    if end < 2:
        raise WireError("payload too short")
    if data[0] != KIND_SAMPLE:
        raise WireError("unknown payload kind 0x%02x" % data[0])
    n = data[1]
    if n < 1 or n > MAX_DEVICE_ID:
        raise WireError("bad device id length %d" % n)
    p = 2 + n
    if end < p + 10:
        raise WireError("truncated header")
    dev = bytes(data[2:p])
    for b in dev:
        if b < 0x21 or b > 0x7E or b in b"/+#":
            raise WireError("device id is not printable ASCII without / + #")
    seq, t, flags, fixq = struct.unpack_from(">IIBB", data, p)
    p += 10
    gps = None
    if fixq:
        if end < p + 16:
            raise WireError("truncated position")
        sats, hdop, lat, lon, alt, spd, crs = struct.unpack_from(">BBiihHH", data, p)
        p += 16
        gps = {
            "fix_quality": fixq,
            "sats": sats,
            "hdop": hdop / 10,
            "lat_e7": lat,
            "lon_e7": lon,
            "lat_deg": lat / 10000000,
            "lon_deg": lon / 10000000,
            "alt_m": alt / 10,
            "speed_kmh": spd / 10,
            "course_deg": None if crs == COURSE_UNKNOWN else crs / 10,
        }
    if end < p + 4:
        raise WireError("truncated channel mask")
    mask = struct.unpack_from(">I", data, p)[0]
    p += 4
    if mask >> N_CHANNELS:
        raise WireError("unknown channel bits in mask 0x%08x" % mask)
    channels = {}
    for i in range(N_CHANNELS):
        name, scale = CHANNELS[i]
        if not mask & (1 << i):
            continue
        if p >= end:
            raise WireError("truncated channel %s" % name)
        st = data[p]
        p += 1
        if st >= len(STATUS_NAMES) or st == STATUS_NOT_FITTED:
            raise WireError("bad status %d for %s" % (st, name))
        if st == STATUS_OK or st == STATUS_OUT_OF_RANGE:
            raw, p = _get_varint(data, p, end)
            channels[name] = {"status": STATUS_NAMES[st], "raw": raw, "value": raw / scale}
        else:
            channels[name] = {"status": STATUS_NAMES[st], "raw": None, "value": None}
    if p != end:
        raise WireError("%d trailing bytes" % (end - p))
    return {
        "v": SCHEMA_VERSION,
        "device": dev.decode(),
        "seq": seq,
        "t_utc_s": t + EPOCH_2020_UNIX_S,
        "flags": flags,
        "gps": gps,
        "channels": channels,
    }


def naive_json(d):
    """The baseline a first prototype would send: JSON with full key names (for benchmarks)."""
    import json
    obj = {"schema_version": d["v"], "device_id": d["device"], "sequence": d["seq"],
           "timestamp_utc": d["t_utc_s"]}
    g = d["gps"] or {}
    obj["gps"] = {"fix_quality": g.get("fix_quality", 0), "satellites": g.get("sats"),
                  "hdop": g.get("hdop"), "latitude": g.get("lat_deg"),
                  "longitude": g.get("lon_deg"), "altitude_m": g.get("alt_m"),
                  "speed_kmh": g.get("speed_kmh"), "course_deg": g.get("course_deg")}
    obj["channels"] = {k: {"value": c["value"], "status": c["status"]}
                       for k, c in d["channels"].items()}
    return json.dumps(obj)
