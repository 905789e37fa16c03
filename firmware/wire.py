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
#
# Batch (KIND_BATCH, 0x02): the catch-up form, many consecutive samples of one device after an
# outage. Each sample is coded against the one before it, so a journal's backlog costs about a
# third of the single form per sample. decode_many() returns exactly what decode() would return
# for each sample sent singly.
#   u8   kind            KIND_BATCH (0x02)
#   u8   device id length, then the id
#   u32  seq0            seq of the first sample
#   u32  t0_s2020        time of the first sample
#   u8   period_s        the expected time step
#   u8   count           samples that follow (1..255)
#   per sample, against the state left by the previous one (initially: seq0 - 1, t0 - period,
#   everything else 0, no channel carried):
#     u8  head           which parts changed (BH_* bits)
#     [BH_SEQ]    varint seq step - 1           [BH_TIME]  varint time step - period
#     [BH_FLAGS]  u8 flags                      [BH_FIX]   u8 fix_quality, u8 sats, u8 hdop_x10
#     [BH_MASK]   u32 channel mask              [BH_STATUS] u8 status of each carried channel
#     [if fix_quality:] varint lat and lon second differences (the change in the step, ~0 at a
#                  steady speed), varint differences of alt_dm, speed_kmh_x10, course_x10
#     per carried channel with a value: varint difference from that channel's last value
#
# Acknowledgement (KIND_ACK, 0x03): gateway -> box, on envbox/v1/<device>/ack/<gateway>. The
# seq ranges of this box's samples that the gateway holds durably (committed to its spool). The
# box releases a journaled sample only when an acknowledgement covers it (docs/firmware.md,
# "End-to-end acknowledgement"); the broker's PUBACK only paces the box's sending.
#   u8   kind            KIND_ACK (0x03)
#   u8   count           ranges that follow, 0..MAX_ACK_RANGES, ascending and disjoint
#   per range: uvarint gap (lo minus the previous range's hi; the first range: lo itself),
#              uvarint len - 1 (the range is lo .. lo + len - 1, both included)
# Unsigned varints, little-endian base 128, at most 30 bits (seqs stay small integers on
# 32-bit boards). Nothing else: the topic names the device and the gateway.

import struct

from .compat import const

KIND_SAMPLE = const(0x01)
KIND_BATCH = const(0x02)
KIND_ACK = const(0x03)
SCHEMA_VERSION = const(1)

# Flags: which time source stamped the sample (exactly one of the three CLOCK bits once the
# clock is known; docs/firmware.md "Clock"), how, and what was done to the values.
FLAG_CLOCK_FROM_GPS = const(0x01)  # the clock was last set from a GNSS fix
FLAG_CLOCK_FROM_NTP = const(0x02)  # the clock was last set from the network's time: SNTP, or the
                                   # LTE modem's clock (AT+CCLK?, the operator's NITZ)
# 0x04 is retired: it was FLAG_REPLAYED ("sent from the journal after an outage"), defined but
# never set by any firmware; left unused so that old readers do not misread a new bit.
FLAG_TIME_FROM_TICKS = const(0x08)  # taken before the clock was known; time reconstructed from
                                    # the tick counter once it was (accuracy: the tick's drift)
FLAG_CALIBRATED = const(0x10)      # remote calibration (offset/slope) applied to the values
FLAG_CLOCK_FROM_RTC = const(0x20)  # the clock was set from the board's RTC, kept across a reset
                                   # (no GNSS or network time since this boot)

# Batch head bits (KIND_BATCH, per sample)
BH_SEQ = const(0x01)
BH_TIME = const(0x02)
BH_FLAGS = const(0x04)
BH_FIX = const(0x08)
BH_MASK = const(0x10)
BH_STATUS = const(0x20)

# Channel status. Every channel of every sample has one; only OK and OUT_OF_RANGE carry a value.
STATUS_OK = const(0)
STATUS_WARMING_UP = const(1)
STATUS_NO_DATA = const(2)          # the module did not answer in time
STATUS_CHECKSUM_ERROR = const(3)
STATUS_OUT_OF_RANGE = const(4)     # value kept, flagged (outside the module's specified range)
STATUS_NOT_FITTED = const(5)
STATUS_SENSOR_ERROR = const(6)     # the module reported a fault

# The channels' names and scales (CHANNELS) and the statuses' names (STATUS_NAMES) are in
# firmware/channels.py: the box reads them only when it compiles a configuration; wire.CHANNELS
# and wire.STATUS_NAMES load them on first use (the names would otherwise sit in the heap).
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
MAX_ACK_RANGES = const(16)
MAX_ACK_BYTES = const(2 + MAX_ACK_RANGES * 10)
# Upper bound of one encoded sample: header + GPS + mask + every channel with a 5-byte varint.
MAX_SAMPLE_BYTES = const(2 + MAX_DEVICE_ID + 4 + 4 + 1 + 1 + 16 + 4 + N_CHANNELS * 6)


class WireError(ValueError):
    pass


class Sample:
    """One sample, preallocated and reused by the firmware (no allocation per sample).

    Units: t_s2020 seconds since 2020-01-01 UTC; lat_e7 degrees x1e7; alt_dm decimetres;
    speed_kmh_x10; course_x10 degrees x10; hdop_x10. value[i] is the scaled integer of
    CHANNELS[i].

    Longitude is held as the two 16-bit halves of its 32-bit value in degrees x1e7:
    lon_e7 = lon_e7_hi * 65536 + lon_e7_lo, with lon_e7_hi signed and 0 <= lon_e7_lo < 65536.
    On a 32-bit MicroPython port a small integer holds +-2^30, and 180 degrees x1e7 is 1.8e9: east
    of 107.37 degrees (all of Beijing) a single integer would be a heap object for every fix.
    Latitude (at most 9e8) fits. Host code may use the `lon_e7` property; the box never does.
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
        self.lon_e7_hi = 0
        self.lon_e7_lo = 0
        self.alt_dm = 0
        self.speed_kmh_x10 = 0
        self.course_x10 = 0
        self.status = bytearray(N_CHANNELS)
        self.value = [0] * N_CHANNELS
        self.clear_channels()

    def _get_lon(self):
        return self.lon_e7_hi * 65536 + self.lon_e7_lo

    def _set_lon(self, v):
        self.lon_e7_hi = v >> 16
        self.lon_e7_lo = v & 0xFFFF

    lon_e7 = property(_get_lon, _set_lon)   # host side and tests (allocates on 32-bit boards)

    def clear_channels(self):
        for i in range(N_CHANNELS):
            self.status[i] = STATUS_NOT_FITTED
            self.value[i] = 0

    def set(self, ch, status, value=0):
        self.status[ch] = status
        self.value[ch] = value if (status == STATUS_OK or status == STATUS_OUT_OF_RANGE) else 0


def _put_varint(buf, pos, v):
    # zig-zag, then little-endian base-128. Values of 2^29 or more would double past a small
    # integer on 32-bit ports: those go through the two-halves path.
    if v >= 0x20000000 or v < -0x20000000:
        return _put_varint2(buf, pos, v >> 16, v & 0xFFFF)
    u = (v << 1) if v >= 0 else ((-v << 1) - 1)
    while u >= 0x80:
        buf[pos] = (u & 0x7F) | 0x80
        u >>= 7
        pos += 1
    buf[pos] = u
    return pos + 1


def _put_varint2(buf, pos, hi, lo):
    """_put_varint of hi * 65536 + lo (0 <= lo < 65536, hi signed), in 16-bit halves: the same
    bytes, and no integer beyond 2^30 on the way."""
    if hi >= 0:
        uh = (hi << 1) | (lo >> 15)
        ul = (lo << 1) & 0xFFFF
    else:
        # -2v - 1 = 2|v| - 1, |v| = (-hi) * 65536 - lo
        if lo:
            mh = -hi - 1
            ml = 65536 - lo
        else:
            mh = -hi
            ml = 0
        uh = (mh << 1) | (ml >> 15)
        ul = (ml << 1) & 0xFFFF
        if ul:
            ul -= 1
        else:
            ul = 0xFFFF
            uh -= 1
    while uh or ul >= 0x80:
        buf[pos] = (ul & 0x7F) | 0x80
        ul = (ul >> 7) | ((uh & 0x7F) << 9)
        uh >>= 7
        pos += 1
    buf[pos] = ul
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
        struct.pack_into(">BBi", buf, p, s.sats, h, s.lat_e7)
        hi = s.lon_e7_hi & 0xFFFF
        lo = s.lon_e7_lo
        buf[p + 6] = hi >> 8
        buf[p + 7] = hi & 0xFF
        buf[p + 8] = lo >> 8
        buf[p + 9] = lo & 0xFF
        struct.pack_into(">hHH", buf, p + 10, s.alt_dm, s.speed_kmh_x10, s.course_x10)
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


def decode_into(s, data, end):
    """Parse a KIND_SAMPLE payload data[:end] into Sample `s` without allocating (the journal's
    records on their way into a batch). Trusts the bytes: they were encoded by this box and
    checked by the journal's CRC. The device id is skipped (s.device is the box's)."""
    p = 2 + data[1]
    # seq and t_s2020 stay below 2^30 (the box's journal and clock make sure), so these sums
    # are small integers; positions are read in 16-bit halves
    s.seq = (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
    s.t_s2020 = (data[p + 4] << 24) | (data[p + 5] << 16) | (data[p + 6] << 8) | data[p + 7]
    s.flags = data[p + 8]
    fq = data[p + 9]
    s.fix_quality = fq
    p += 10
    if fq:
        s.sats = data[p]
        s.hdop_x10 = data[p + 1]
        v = (data[p + 2] << 8) | data[p + 3]
        if v & 0x8000:
            v -= 0x10000
        s.lat_e7 = v * 65536 + ((data[p + 4] << 8) | data[p + 5])
        v = (data[p + 6] << 8) | data[p + 7]
        s.lon_e7_hi = v - 0x10000 if v & 0x8000 else v
        s.lon_e7_lo = (data[p + 8] << 8) | data[p + 9]
        v = (data[p + 10] << 8) | data[p + 11]
        s.alt_dm = v - 0x10000 if v & 0x8000 else v
        s.speed_kmh_x10 = (data[p + 12] << 8) | data[p + 13]
        s.course_x10 = (data[p + 14] << 8) | data[p + 15]
        p += 16
    else:
        s.sats = s.hdop_x10 = s.lat_e7 = s.lon_e7_hi = s.lon_e7_lo = 0
        s.alt_dm = s.speed_kmh_x10 = 0
        s.course_x10 = 0
    mask = (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
    p += 4
    st = s.status
    val = s.value
    for i in range(N_CHANNELS):
        if mask & (1 << i):
            c = data[p]
            p += 1
            st[i] = c
            if c == STATUS_OK or c == STATUS_OUT_OF_RANGE:
                u = 0
                shift = 0
                while True:
                    b = data[p]
                    p += 1
                    u |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                val[i] = (u >> 1) if not u & 1 else -((u + 1) >> 1)
            else:
                val[i] = 0
        else:
            st[i] = STATUS_NOT_FITTED
            val[i] = 0
    return p


def decode_ack_into(data, end, lo, hi):
    """Parse a KIND_ACK payload data[:end] into the caller's lists lo and hi (each at least
    MAX_ACK_RANGES long; range k covers seqs lo[k]..hi[k] - 1). Returns the count, or -1 for a
    malformed payload (never raises, never allocates: the box calls it from its MQTT reader)."""
    if end < 2 or data[0] != KIND_ACK:
        return -1
    n = data[1]
    if n > MAX_ACK_RANGES:
        return -1
    p = 2
    prev = 0
    for k in range(2 * n):
        # one unsigned varint of at most 30 bits (a wider one would be a big int on 32 bits)
        u = 0
        shift = 0
        while True:
            if p >= end or shift > 28:
                return -1
            b = data[p]
            p += 1
            if shift == 28 and b > 3:
                return -1
            u |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        if u >= 0x3FFFFFFF - prev:
            return -1       # past 2^30 - 1 (and the sum would be a big int on 32 bits)
        if k & 1 == 0:
            if k and u == 0:
                return -1   # touching or overlapping ranges: the sender should have merged them
            prev += u
            lo[k >> 1] = prev
        else:
            prev += u + 1
            hi[k >> 1] = prev
    if p != end:
        return -1
    return n


class BatchEncoder:
    """Builds one KIND_BATCH payload in a caller's bytearray; no allocation per sample.

        e = BatchEncoder(buf, period_s)
        e.begin(first_sample); e.add(first_sample); e.add(next) ...; n = e.finish()
    add() returns False (and writes nothing) when the buffer might not hold another sample.
    """

    def __init__(self, buf, period_s=10):
        self.buf = buf
        self.period_s = period_s
        self.status = bytearray(N_CHANNELS)
        self.value = [0] * N_CHANNELS
        self.count = 0
        self.p = 0

    def begin(self, s):
        buf = self.buf
        dev = s.device
        n = len(dev)
        buf[0] = KIND_BATCH
        buf[1] = n
        for i in range(n):
            buf[2 + i] = dev[i]
        p = 2 + n
        struct.pack_into(">IIB", buf, p, s.seq, s.t_s2020, self.period_s)
        p += 10   # count byte at p - 1, written by finish()
        self._count_at = p - 1
        self.p = p
        self.count = 0
        self.seq = s.seq - 1
        self.t = s.t_s2020 - self.period_s
        self.flags = self.fixq = self.sats = self.hdop = 0
        # position state in 16-bit halves (value, step): see add()
        self.lath = self.latl = self.dlath = self.dlatl = 0
        self.lonh = self.lonl = self.dlonh = self.dlonl = 0
        self.alt = self.spd = self.crs = 0
        self.mask = 0
        st = self.status
        val = self.value
        for i in range(N_CHANNELS):
            st[i] = STATUS_NOT_FITTED
            val[i] = 0

    def room(self):
        return self.count < 255 and len(self.buf) - self.p >= MAX_SAMPLE_BYTES + 12

    def add(self, s):
        if not self.room():
            return False
        buf = self.buf
        hp = self.p
        p = hp + 1
        head = 0
        ds = s.seq - self.seq
        if ds != 1:
            head |= BH_SEQ
            p = _put_varint(buf, p, ds - 1)
        dt = s.t_s2020 - self.t
        if dt != self.period_s:
            head |= BH_TIME
            p = _put_varint(buf, p, dt - self.period_s)
        if s.flags != self.flags:
            head |= BH_FLAGS
            buf[p] = s.flags
            p += 1
        fq = s.fix_quality
        h = s.hdop_x10 if s.hdop_x10 < 255 else 255
        if fq != self.fixq or (fq and (s.sats != self.sats or h != self.hdop)):
            head |= BH_FIX
            buf[p] = fq
            buf[p + 1] = s.sats if fq else 0
            buf[p + 2] = h if fq else 0
            p += 3
            self.fixq = fq
            if fq:
                self.sats = s.sats
                self.hdop = h
        st = s.status
        mask = 0
        for i in range(N_CHANNELS):
            if st[i] != STATUS_NOT_FITTED:
                mask |= 1 << i
        if mask != self.mask:
            head |= BH_MASK
            struct.pack_into(">I", buf, p, mask)
            p += 4
        pst = self.status
        changed = False
        for i in range(N_CHANNELS):
            if st[i] != pst[i]:
                changed = True
        if changed:
            head |= BH_STATUS
            for i in range(N_CHANNELS):
                if mask & (1 << i):
                    buf[p] = st[i]
                    p += 1
                pst[i] = st[i]
        if fq:
            # first and second differences of latitude and longitude in 16-bit halves: a
            # receiver's glitch (or a batch's first sample, coded against 0) can jump by up to
            # 360 degrees, beyond a 32-bit port's small integers as one number
            a = s.lat_e7
            dh = (a >> 16) - self.lath
            dl = (a & 0xFFFF) - self.latl
            if dl < 0:
                dl += 65536
                dh -= 1
            eh = dh - self.dlath
            el = dl - self.dlatl
            if el < 0:
                el += 65536
                eh -= 1
            p = _put_varint2(buf, p, eh, el)
            self.lath = a >> 16
            self.latl = a & 0xFFFF
            self.dlath = dh
            self.dlatl = dl
            dh = s.lon_e7_hi - self.lonh
            dl = s.lon_e7_lo - self.lonl
            if dl < 0:
                dl += 65536
                dh -= 1
            eh = dh - self.dlonh
            el = dl - self.dlonl
            if el < 0:
                el += 65536
                eh -= 1
            p = _put_varint2(buf, p, eh, el)
            self.lonh = s.lon_e7_hi
            self.lonl = s.lon_e7_lo
            self.dlonh = dh
            self.dlonl = dl
            p = _put_varint(buf, p, s.alt_dm - self.alt)
            p = _put_varint(buf, p, s.speed_kmh_x10 - self.spd)
            p = _put_varint(buf, p, s.course_x10 - self.crs)
            self.alt = s.alt_dm
            self.spd = s.speed_kmh_x10
            self.crs = s.course_x10
        val = s.value
        pval = self.value
        for i in range(N_CHANNELS):
            c = st[i]
            if c == STATUS_OK or c == STATUS_OUT_OF_RANGE:
                p = _put_varint(buf, p, val[i] - pval[i])
                pval[i] = val[i]
        buf[hp] = head
        self.p = p
        self.seq = s.seq
        self.t = s.t_s2020
        self.flags = s.flags
        self.mask = mask
        self.count += 1
        return True

    def finish(self):
        self.buf[self._count_at] = self.count
        return self.p


def __getattr__(name):
    # The host side (gateway, tools, tests) decodes; the box only encodes. The decoders and the
    # allocating helpers (encode, decode, decode_many, singles, naive_json, encode_ack,
    # decode_ack, status_has_value) live in wiredecode.py and load on first use, so their
    # bytecode never takes the box's heap: wire.decode(...) works the same on both sides.
    if name in _HOST_API:
        from . import wiredecode
        return getattr(wiredecode, name)
    if name == "CHANNELS" or name == "STATUS_NAMES":
        from . import channels
        return getattr(channels, name)
    raise AttributeError(name)


_HOST_API = ("encode", "decode", "decode_many", "singles", "naive_json", "encode_ack",
             "decode_ack", "status_has_value")
