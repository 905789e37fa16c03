# GNSS receiver (u-blox NEO-6M / NEO-M8N class) on a UART, NMEA 0183 at 9600 8N1, 1 Hz.
# Protocol page: docs/sensors/gnss.md. NMEA 0183 v4.1 RMC and GGA; any talker (GP, GN, BD, GL,
# GA). Checksum: XOR of the characters between '$' and '*', two hex digits.
#
# GNSS.push() is the family's sentence parser, apart from what the sentences mean. A fix is published only when RMC
# says 'A' (valid) and GGA reports quality > 0 for the same UTC second; the clock may be set only
# from such a fix (receivers print time with status 'V' before they have a fix, and that time
# can be wrong). Everything is parsed into integers with fixed scales, in place, so the steady
# state allocates nothing.
#
# Integer conversions (the simulator's ground truth uses the same arithmetic):
#   lat_e7 = dd * 10^7 + round(minutes_e5 * 10^7 / (60 * 10^5)) = dd*10^7 + (m_e5*5 + 1)//3
#   (longitude the same, held as the 16-bit halves of its 32-bit value: lon_e7_hi, lon_e7_lo, as
#   in wire.Sample, because 180 degrees x1e7 is beyond a 32-bit port's small integers)
#   speed_kmh_x10 = round(knots_e3 * 1.852 * 10 / 1000) = (kn_e3*1852 + 50000)//100000
#   course_x10 = round(course_e2 / 10) (0xFFFF when the field is empty), hdop_x10 = round(hdop_e2 / 10), alt_dm = altitude_e1

from ..compat import const
from . import checksums
from .frames import CHECKSUM, GOOD, INCOMPLETE, OVERLONG

_LINE_LEN = const(96)     # NMEA allows 82 characters; u-blox stays below
_RX_LEN = const(64)
_MAX_FIELDS = const(20)
_DAYS_1970_TO_2020 = const(18262)
_MIN_YEAR = const(2024)   # a receiver's date before this is its power-on default, not the time
_COURSE_UNKNOWN = const(0xFFFF)   # wire.COURSE_UNKNOWN
_MAX_KNOTS_E3 = const(500000)
_RING = const(16)         # fixes kept, one per second: a late sample still gets its own second
_RF = const(10)           # entries per fix in the ring


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a Gregorian date (H. Hinnant's algorithm, integers only)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _hex(c):
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


class GNSS:
    """NMEA GNSS receiver. After poll(), `fix_t_s2020` is the UTC second (since 2020) of the last
    complete valid fix, with lat_e7/lon_e7 (degrees x1e7), alt_dm, speed_kmh_x10, course_x10,
    sats, hdop_x10 and fix_quality."""

    def __init__(self, uart, cfg=None):
        self._uart = uart
        # dates before min_year are a receiver's power-on default: never a valid fix
        self._min_day = days_from_civil((cfg or {}).get("min_year", _MIN_YEAR), 1, 1)
        self._rx = bytearray(_RX_LEN)
        self.fbuf = bytearray(_LINE_LEN)
        self.fpos = 0             # characters held of an open sentence
        self.flen = 0             # length of the last complete sentence
        self._in = False
        self.bytes_skipped = 0
        self._f = [0] * _MAX_FIELDS     # field start offsets in fbuf
        self._nf = 0
        self._empty = False
        self._s = 0
        self._e = 0
        self._end = 0
        self.last_kind = 0        # 1 = RMC, 2 = GGA: the last sentence with a good checksum
        # last RMC (public for tests and `envbox decode nmea`; read-only for others)
        self.rmc_sod = -1
        self.rmc_day = -1
        self.rmc_valid = False
        self.rmc_status = 0       # the status character: 0x41 'A' valid, 0x56 'V' void
        self.rmc_lat = 0
        self.rmc_lon_hi = 0
        self.rmc_lon_lo = 0
        self.rmc_speed = 0
        self.rmc_course = 0
        # last GGA
        self.gga_sod = -1
        self.gga_q = 0
        self.gga_sats = 0
        self.gga_hdop = 0
        self.gga_alt = 0
        self.gga_lat = 0
        self.gga_lon_hi = 0
        self.gga_lon_lo = 0
        # published fix
        self.fix_t_s2020 = -1
        self.fix_quality = 0
        self.lat_e7 = 0
        self.lon_e7_hi = 0
        self.lon_e7_lo = 0
        self.alt_dm = 0
        self.speed_kmh_x10 = 0
        self.course_x10 = 0
        self.sats = 0
        self.hdop_x10 = 0
        self.fixes = 0
        # the last _RING fixes by second, so fill() finds the fix of any recent grid second: one
        # list, _RF entries per fix (second, quality, lat, lon hi, lon lo, alt, speed, course,
        # sats, hdop), the second -1 where none
        self._ring = [0] * (_RING * _RF)
        for k in range(_RING):
            self._ring[k * _RF] = -1
        self._lo = 0              # low half of the last _angle() (see there)
        # last time seen, even without a fix (for diagnostics only; never sets the clock)
        self.time_seen_s2020 = -1
        # counters
        self.sentences_ok = self.checksum_errors = self.overlong = self.bad_fields = 0
        self.alt_out_of_range = 0

    def start(self, now_ms):
        pass

    def poll(self, now_ms):
        """Consume the bytes the UART holds; return the number of new complete fixes."""
        before = self.fixes
        try:
            while self._uart.any():
                got = self._uart.readinto(self._rx, _RX_LEN)
                if not got:
                    break
                for i in range(got):
                    v = self.push(self._rx[i])
                    if v:
                        self.take(v)
        except OSError:
            pass
        return self.fixes - before

    # -- the NMEA family's sentence parser -------------------------------------------------------
    # '$' starts a sentence, CR or LF ends it. push(c) returns INCOMPLETE, or GOOD with the
    # sentence (without '$', with its '*hh') in fbuf[0:flen], CHECKSUM (bad or missing *hh, a
    # cut-off line too) or OVERLONG (longer than fbuf).
    def push(self, c):
        if c == 0x24:  # '$'
            if self._in:
                self.bytes_skipped += self.fpos
            self._in = True
            self.fpos = 0
            return INCOMPLETE
        if not self._in:
            if c != 0x0D and c != 0x0A:
                self.bytes_skipped += 1
            return INCOMPLETE
        n = self.fpos
        if c == 0x0A or c == 0x0D:
            self._in = False
            self.fpos = 0
            self.flen = n
            b = self.fbuf
            if n < 9 or b[n - 3] != 0x2A:
                return CHECKSUM
            h = _hex(b[n - 2])
            lo = _hex(b[n - 1])
            if h < 0 or lo < 0 or (h << 4 | lo) != checksums.nmea_xor(b, 0, n - 3):
                return CHECKSUM
            return GOOD
        if n >= _LINE_LEN:
            self.bytes_skipped += n
            self._in = False
            self.fpos = 0
            return OVERLONG
        self.fbuf[n] = c
        self.fpos = n + 1
        return INCOMPLETE

    # -- what a sentence means ------------------------------------------------------------------
    def take(self, v):
        """What a complete sentence's verdict does: a good RMC or GGA is parsed."""
        if v == GOOD:
            self.sentences_ok += 1
            self._sentence(self.flen)
        elif v == CHECKSUM:
            self.checksum_errors += 1
        elif v == OVERLONG:
            self.overlong += 1

    def _sentence(self, n):
        b = self.fbuf
        # split fields (offsets of the character after each ',')
        f = self._f
        nf = 0
        f[0] = 0
        nf = 1
        end = n - 3
        for i in range(end):
            if b[i] == 0x2C:
                if nf >= _MAX_FIELDS:
                    break
                f[nf] = i + 1
                nf += 1
        self._nf = nf
        self._end = end
        # sentence id: talker (2 chars) + type (3 chars)
        if nf < 2 or f[1] != 6:
            return
        t0, t1, t2 = b[2], b[3], b[4]
        self.last_kind = 0
        if t0 == 0x52 and t1 == 0x4D and t2 == 0x43:      # RMC
            self.last_kind = 1
            self._rmc()
        elif t0 == 0x47 and t1 == 0x47 and t2 == 0x41:    # GGA
            self.last_kind = 2
            self._gga()

    def _span(self, k):
        # field k is fbuf[_s:_e]; an absent field is empty (no tuple: nothing to allocate)
        if k >= self._nf:
            self._s = 0
            self._e = 0
            return
        self._s = self._f[k]
        self._e = self._f[k + 1] - 1 if k + 1 < self._nf else self._end

    def _dec(self, k, decimals):
        """Field k as an integer scaled by 10**decimals (rounded half up). Sets self._empty."""
        if k >= self._nf:
            self._empty = True
            return 0
        self._span(k)
        s = self._s
        e = self._e
        b = self.fbuf
        self._empty = s >= e
        neg = False
        if s < e and b[s] == 0x2D:
            neg = True
            s += 1
        v = 0
        frac = -1          # digits seen after the point; -1 before it
        roundup = 0
        ndig = 0           # at most 9 significant digits: the result stays a small integer on
                           # a 32-bit port (a longer field is garbage: counted as a bad field)
        for i in range(s, e):
            c = b[i]
            if c == 0x2E:
                if frac >= 0:
                    self._empty = True
                    return 0
                frac = 0
                continue
            if c < 48 or c > 57:
                self._empty = True
                return 0
            if frac >= decimals:
                if frac == decimals:
                    roundup = 1 if c >= 53 else 0
                frac += 1
                continue
            v = v * 10 + (c - 48)
            ndig += 1
            if frac >= 0:
                frac += 1
        if frac < 0:
            frac = 0
        ndig += decimals - frac
        if ndig > 9:
            self._empty = True
            return 0
        while frac < decimals:
            v *= 10
            frac += 1
        v += roundup
        return -v if neg else v

    def _sod(self, k):
        # hhmmss(.ss) -> seconds of day, or -1
        v = self._dec(k, 0)
        if self._empty:
            return -1
        # _dec rounded the fraction; time is floored instead
        self._span(k)
        s = self._s
        e = self._e
        if e - s < 6:
            return -1
        b = self.fbuf
        hh = (b[s] - 48) * 10 + b[s + 1] - 48
        mm = (b[s + 2] - 48) * 10 + b[s + 3] - 48
        ss = (b[s + 4] - 48) * 10 + b[s + 5] - 48
        if v < 0 or hh > 23 or mm > 59 or ss > 60:
            return -1
        return hh * 3600 + mm * 60 + ss

    def _angle(self, k, deg_digits):
        # ddmm.mmmmm + hemisphere in field k+1 -> degrees x1e7 as two 16-bit halves: returns the
        # high half (signed), leaves the low half (0..65535) in self._lo; or 0 with _empty set.
        # value = dd*10^7 + f with 10^7 = 152*65536 + 38528, so no integer beyond 2^30 is made.
        self._span(k)
        s = self._s
        e = self._e
        if e - s < deg_digits + 2:
            self._empty = True
            return 0
        b = self.fbuf
        dd = 0
        for i in range(s, s + deg_digits):
            c = b[i]
            if c < 48 or c > 57:
                self._empty = True
                return 0
            dd = dd * 10 + c - 48
        # minutes: parse the rest of the field as a decimal with 5 places
        save = self._f[k]
        self._f[k] = s + deg_digits
        m_e5 = self._dec(k, 5)
        self._f[k] = save
        if self._empty or m_e5 >= 6000000 or m_e5 < 0 or dd > 180:
            self._empty = True
            return 0
        lo = dd * 38528 + (m_e5 * 5 + 1) // 3
        hi = dd * 152 + (lo >> 16)
        lo &= 0xFFFF
        self._span(k + 1)
        if self._e - self._s != 1:
            self._empty = True
            return 0
        h = b[self._s]
        if h == 0x53 or h == 0x57:   # S, W
            if lo:
                hi = -hi - 1
                lo = 65536 - lo
            else:
                hi = -hi
        elif h != 0x4E and h != 0x45:
            self._empty = True
            return 0
        self._lo = lo
        return hi

    def _rmc(self):
        # $xxRMC,time,status,lat,N,lon,E,speed_kn,course,date,magvar,E,mode*CS
        sod = self._sod(1)
        self._span(9)
        s = self._s
        e = self._e
        day = -1
        if sod >= 0 and e - s == 6:
            b = self.fbuf
            d = (b[s] - 48) * 10 + b[s + 1] - 48
            mo = (b[s + 2] - 48) * 10 + b[s + 3] - 48
            yy = (b[s + 4] - 48) * 10 + b[s + 5] - 48
            if 1 <= d <= 31 and 1 <= mo <= 12 and 0 <= yy <= 99:
                day = days_from_civil(2000 + yy, mo, d)
        if sod < 0 or day < 0:
            self.rmc_valid = False
            self.bad_fields += 1
            return
        self.rmc_sod = sod
        self.rmc_day = day
        self.time_seen_s2020 = (day - _DAYS_1970_TO_2020) * 86400 + sod
        self._span(2)
        self.rmc_status = self.fbuf[self._s] if self._e - self._s == 1 else 0
        valid = self.rmc_status == 0x41 and day >= self._min_day
        self.rmc_valid = False
        if not valid:
            return
        lat = self._angle(3, 2)
        if self._empty:
            self.bad_fields += 1
            return
        lat = lat * 65536 + self._lo      # at most 90 degrees: a small integer
        lon = self._angle(5, 3)
        if self._empty:
            self.bad_fields += 1
            return
        lon_lo = self._lo
        kn = self._dec(7, 3)
        kn_bad = self._empty and self._e > self._s     # present but not a number
        if self._empty:
            kn = 0
        crs = self._dec(8, 2)
        crs_empty = self._empty
        if crs_empty and self._e > self._s:
            kn_bad = True
        # plausibility: at most 500 knots (926 km/h; also keeps kn * 1852 below 2^30) and a
        # course below 360 degrees; beyond, the sentence is garbage with a good checksum
        if kn_bad or kn < 0 or kn > _MAX_KNOTS_E3 or \
                (not crs_empty and (crs < 0 or crs >= 36000)):
            self.bad_fields += 1
            return
        self.rmc_lat = lat
        self.rmc_lon_hi = lon
        self.rmc_lon_lo = lon_lo
        self.rmc_speed = (kn * 1852 + 50000) // 100000
        # empty course (standing still) is unknown, not north
        self.rmc_course = _COURSE_UNKNOWN if crs_empty else (crs + 5) // 10
        self.rmc_valid = True
        self._combine()

    def _gga(self):
        # $xxGGA,time,lat,N,lon,E,quality,numSV,HDOP,alt,M,sep,M,age,station*CS
        sod = self._sod(1)
        if sod < 0:
            self.bad_fields += 1
            return
        q = self._dec(6, 0)
        if self._empty:
            q = 0
        self.gga_sod = sod
        self.gga_q = q
        if q <= 0:
            return
        lat = self._angle(2, 2)
        if self._empty:
            self.gga_q = 0
            self.bad_fields += 1
            return
        lat = lat * 65536 + self._lo
        lon = self._angle(4, 3)
        if self._empty:
            self.gga_q = 0
            self.bad_fields += 1
            return
        lon_lo = self._lo
        sats = self._dec(7, 0)
        if self._empty or sats < 0:
            sats = 0
        elif sats > 255:
            sats = 255
        hd = self._dec(8, 2)
        hd = 2550 if self._empty else hd
        alt = self._dec(9, 1)
        if self._empty:
            alt = 0
        elif alt > 32767 or alt < -32768:
            # the wire carries altitude as i16 decimetres (+-3276.7 m): beyond, the value is
            # held at the limit and counted (a box above 3,277 m: La Paz, Lhasa)
            alt = 32767 if alt > 0 else -32768
            self.alt_out_of_range += 1
        self.gga_lat = lat
        self.gga_lon_hi = lon
        self.gga_lon_lo = lon_lo
        self.gga_sats = sats
        self.gga_hdop = (hd + 5) // 10
        self.gga_alt = alt
        self._combine()

    def _combine(self):
        if not self.rmc_valid or self.gga_q <= 0 or self.rmc_sod != self.gga_sod:
            return
        t = (self.rmc_day - _DAYS_1970_TO_2020) * 86400 + self.rmc_sod
        if t == self.fix_t_s2020:
            return
        self.fix_t_s2020 = t
        self.fix_quality = self.gga_q
        self.lat_e7 = self.rmc_lat
        self.lon_e7_hi = self.rmc_lon_hi
        self.lon_e7_lo = self.rmc_lon_lo
        self.speed_kmh_x10 = self.rmc_speed
        self.course_x10 = self.rmc_course
        self.sats = self.gga_sats
        self.hdop_x10 = self.gga_hdop
        self.alt_dm = self.gga_alt
        r = self._ring
        k = t % _RING * _RF
        r[k] = t
        r[k + 1] = self.fix_quality
        r[k + 2] = self.lat_e7
        r[k + 3] = self.lon_e7_hi
        r[k + 4] = self.lon_e7_lo
        r[k + 5] = self.alt_dm
        r[k + 6] = self.speed_kmh_x10
        r[k + 7] = self.course_x10
        r[k + 8] = self.sats
        r[k + 9] = self.hdop_x10
        self.fixes += 1

    def has_fix(self, t_s2020):
        return t_s2020 >= 0 and self._ring[t_s2020 % _RING * _RF] == t_s2020

    def fill(self, sample, t_s2020):
        """Copy the fix of second `t_s2020` into `sample`; no fix of that second -> fix_quality 0."""
        r = self._ring
        k = t_s2020 % _RING * _RF
        if r[k] != t_s2020:
            sample.fix_quality = 0
            return False
        sample.fix_quality = r[k + 1]
        sample.lat_e7 = r[k + 2]
        sample.lon_e7_hi = r[k + 3]
        sample.lon_e7_lo = r[k + 4]
        sample.alt_dm = r[k + 5]
        sample.speed_kmh_x10 = r[k + 6]
        sample.course_x10 = r[k + 7]
        sample.sats = r[k + 8]
        sample.hdop_x10 = r[k + 9]
        return True
