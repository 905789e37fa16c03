"""u-blox-like GNSS receiver (NEO-6M/NEO-M8N class) sending NMEA 0183 at 1 Hz (protocol page
docs/sensors/gnss.md).

For each UTC second T it sends $xxRMC then $xxGGA, CRLF-terminated, with XOR checksums, a short
time after the epoch (latency_s). The first no_fix_s seconds after power-on have no fix, like a
real receiver: RMC status V with time and date, GGA quality 0 with an empty position.

Ground truth: for every second sent, the integers the text encodes (docs/contracts.md): lat_e7 and
lon_e7 from ddmm.mmmmm exactly, speed_kmh_x10 from knots, course_x10, hdop_x10, alt_dm, and the raw
sentences. decode_rmc()/decode_gga() below compute them from the text; tests check them against
pynmea2.
"""

import math
import random
import time as _time

from . import SerialModel

GEOID_SEPARATION_M = -8.6   # EGM96 geoid below the WGS84 ellipsoid near Beijing, about -8.6 m


def checksum(body):
    """NMEA XOR of the characters between '$' and '*'."""
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return c


def sentence(body):
    """'$' + body + '*' + checksum + CRLF."""
    return "$%s*%02X\r\n" % (body, checksum(body))


def format_coord(deg, lon):
    """(text, hemisphere) for degrees: ddmm.mmmmm (lat) or dddmm.mmmmm (lon), 5 decimals."""
    a = abs(deg)
    dd = int(a)
    m_e5 = int(round((a - dd) * 60 * 100000))
    if m_e5 >= 6000000:
        dd, m_e5 = dd + 1, m_e5 - 6000000
    text = ("%03d" if lon else "%02d") % dd + "%02d.%05d" % (m_e5 // 100000, m_e5 % 100000)
    hemi = ("E" if deg >= 0 else "W") if lon else ("N" if deg >= 0 else "S")
    return text, hemi


def _fixed(text, decimals):
    """Integer value of a decimal text scaled by 10**decimals ('1.72', 2 -> 172). Shorter
    fractions are padded, longer ones truncated (never happens for our own text)."""
    neg = text.startswith("-")
    if neg or text.startswith("+"):
        text = text[1:]
    ip, _, fp = text.partition(".")
    fp = (fp + "0" * decimals)[:decimals]
    v = int(ip or "0") * 10 ** decimals + (int(fp) if decimals else 0)
    return -v if neg else v


def coord_e7(text, hemi):
    """Degrees x1e7 from ddmm.mmmmm / dddmm.mmmmm text: dd*10^7 + round(minutes*10^5 * 5/3).

    m_e5 = minutes x1e5; m_e5*5/3 never ends in exactly .5 (a multiple of 1/3), so
    (m_e5*5 + 1)//3 is the correctly rounded value with no tie to break.
    """
    if not text:
        return None
    ip = text.split(".")[0]
    dd = int(ip[:-2])
    m_e5 = _fixed(text[len(ip) - 2:], 5)
    v = dd * 10_000_000 + (m_e5 * 5 + 1) // 3
    return -v if hemi in ("S", "W") else v


def speed_kmh_x10(knots_text):
    if not knots_text:
        return None
    return (_fixed(knots_text, 3) * 1852 + 50000) // 100000


def tenths_from_e2(text):
    """course_x10 / hdop_x10 from a 2-decimal text: (v_e2 + 5)//10."""
    if not text:
        return None
    return (_fixed(text, 2) + 5) // 10


def _fields(s):
    s = s.strip()
    if not s.startswith("$") or "*" not in s:
        raise ValueError("not a sentence")
    body, _, cs = s[1:].partition("*")
    if int(cs[:2], 16) != checksum(body):
        raise ValueError("checksum")
    return body.split(",")


def _tod_s(hhmmss):
    return int(hhmmss[0:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6])


def decode_rmc(s):
    """Integers encoded in an RMC sentence (raises ValueError on a bad checksum)."""
    f = _fields(s)
    if not f[0].endswith("RMC"):
        raise ValueError("not RMC")
    tod = _tod_s(f[1]) if f[1] else None
    t_unix = None
    if f[1] and f[9]:
        import calendar
        d, mo, y = int(f[9][0:2]), int(f[9][2:4]), 2000 + int(f[9][4:6])
        t_unix = calendar.timegm((y, mo, d, 0, 0, 0)) + tod
    return {"type": "RMC", "talker": f[0][:2], "status": f[2], "utc_tod_s": tod, "t_unix_s": t_unix,
            "lat_e7": coord_e7(f[3], f[4]), "lon_e7": coord_e7(f[5], f[6]),
            "speed_kmh_x10": speed_kmh_x10(f[7]), "course_x10": tenths_from_e2(f[8]),
            "mode": f[12] if len(f) > 12 else None}


def decode_gga(s):
    """Integers encoded in a GGA sentence (raises ValueError on a bad checksum)."""
    f = _fields(s)
    if not f[0].endswith("GGA"):
        raise ValueError("not GGA")
    return {"type": "GGA", "talker": f[0][:2], "utc_tod_s": _tod_s(f[1]) if f[1] else None,
            "lat_e7": coord_e7(f[2], f[3]), "lon_e7": coord_e7(f[4], f[5]),
            "fix_quality": int(f[6]) if f[6] else 0, "sats": int(f[7]) if f[7] else None,
            "hdop_x10": tenths_from_e2(f[8]), "alt_dm": _fixed(f[9], 1) if f[9] else None}


class GNSS(SerialModel):
    """talker: "GP" (NEO-6) or "GN" (NEO-M8N, GPS+GLONASS). no_fix_s: seconds without a fix after
    power-on. latency_s: virtual delay between the epoch T and the sentences of T. jitter_m:
    position noise (metres, 1 sigma, per second). max_backlog_s: if the server falls further
    behind than this, seconds are skipped (counted in seconds_skipped) instead of bursting.
    Counters: seconds_sent, seconds_skipped, bytes_ignored (the firmware wrote to the receiver).
    """

    name = "gnss"

    def __init__(self, world, truth=None, seed=0, talker="GP", no_fix_s=3, latency_s=0.1,
                 jitter_m=1.0, geoid_sep_m=GEOID_SEPARATION_M, max_backlog_s=5.0):
        super().__init__()
        if talker not in ("GP", "GN"):
            raise ValueError("talker must be GP or GN")
        self.world = world
        self.truth = truth
        self.seed = seed
        self.talker = talker
        self.no_fix_s = no_fix_s
        self.latency_s = latency_s
        self.jitter_m = jitter_m
        self.geoid_sep_m = geoid_sep_m
        self.max_backlog_s = max_backlog_s
        self.t_power_on = None
        self._next_T = None

    def start(self, t):
        self.t_power_on = t
        self._next_T = int(math.ceil(t))

    def next_tick(self):
        return None if self._next_T is None else self._next_T + self.latency_s

    def tick(self, t):
        if self._next_T is None:
            return
        behind = t - (self._next_T + self.latency_s)
        if behind > self.max_backlog_s:
            skip = int(behind)
            self.count("seconds_skipped", skip)
            self._next_T += skip
        while self._next_T + self.latency_s <= t:
            T = self._next_T
            rmc, gga = self.sentences(T)
            self.emit(T + self.latency_s, (rmc + gga).encode("ascii"))
            self.count("seconds_sent")
            if self.truth is not None:
                self.truth.record(self.truth_record(T, rmc, gga))
            self._next_T = T + 1

    def receive(self, data, t):
        # UBX/PUBX configuration is accepted and ignored, as a receiver ignores what it
        # does not understand.
        self.count("bytes_ignored", len(data))

    def sentences(self, T):
        """(RMC, GGA) text for UTC second T (deterministic)."""
        tm = _time.gmtime(T)
        hhmmss = "%02d%02d%02d.00" % (tm.tm_hour, tm.tm_min, tm.tm_sec)
        ddmmyy = "%02d%02d%02d" % (tm.tm_mday, tm.tm_mon, tm.tm_year % 100)
        since_on = T - self.t_power_on
        rng = random.Random("gnss:%s:%d" % (self.seed, T))
        tp = self.talker
        if since_on < self.no_fix_s:
            sats = max(0, min(3, int(since_on) + 1))
            rmc = sentence("%sRMC,%s,V,,,,,,,%s,,,N" % (tp, hhmmss, ddmmyy))
            gga = sentence("%sGGA,%s,,,,,0,%02d,99.99,,,,,," % (tp, hhmmss, sats))
            return rmc, gga
        st = self.world.vehicle_state(T)
        de, dn = rng.gauss(0, self.jitter_m), rng.gauss(0, self.jitter_m)
        lat = st.lat + dn / 110_574.0
        lon = st.lon + de / (111_320.0 * math.cos(math.radians(st.lat)))
        lat_t, ns = format_coord(lat, False)
        lon_t, ew = format_coord(lon, True)
        if st.speed_kmh > 0.0:
            speed = "%.3f" % (st.speed_kmh / 1.852)
            course = "%.2f" % st.course_deg
            if course == "360.00":
                course = "0.00"
        else:
            # Stopped: a few hundredths of a knot of noise and no course, like the captures.
            speed = "%.3f" % abs(rng.gauss(0, 0.015))
            course = ""
        # Satellites and HDOP drift slowly with the sky; street canyons make them worse.
        sats = 9 + int(round(2 * math.sin(T / 97.0) + math.sin(T / 23.0)))
        hdop = 1.0 + 0.3 * math.sin(T / 53.0) + 0.1 * math.sin(T / 7.0)
        rmc = sentence("%sRMC,%s,A,%s,%s,%s,%s,%s,%s,%s,,,A" %
                       (tp, hhmmss, lat_t, ns, lon_t, ew, speed, course, ddmmyy))
        gga = sentence("%sGGA,%s,%s,%s,%s,%s,1,%02d,%.2f,%.1f,M,%.1f,M,," %
                       (tp, hhmmss, lat_t, ns, lon_t, ew, sats, hdop, st.alt_m, self.geoid_sep_m))
        return rmc, gga

    @staticmethod
    def truth_record(T, rmc, gga):
        r, g = decode_rmc(rmc), decode_gga(gga)
        return {"kind": "gnss", "t": T, "fix_quality": g["fix_quality"], "status": r["status"],
                "lat_e7": g["lat_e7"], "lon_e7": g["lon_e7"], "alt_dm": g["alt_dm"],
                "speed_kmh_x10": r["speed_kmh_x10"], "course_x10": r["course_x10"],
                "sats": g["sats"], "hdop_x10": g["hdop_x10"],
                "rmc": rmc.rstrip("\r\n"), "gga": gga.rstrip("\r\n")}
