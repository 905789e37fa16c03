"""The box's world: patrol vehicles driving closed routes through a district and the pollution
field they drive through. The default world is Shuangjing (Chaoyang district, Beijing; about
39.88-39.90 N, 116.45-116.48 E), described by worlds/shuangjing.toml; load_world(FILE) reads
another (TOML or JSON, same keys; the file's comments explain them).

Everything is a deterministic function of (seed, start time, virtual time), so two runs with the
same seed see the same street, the same red lights and the same hotspots, and a model can ask
for the truth at any virtual time in any order.

Units are in the names: lat/lon degrees (WGS84), altitude metres above mean sea level, speed km/h,
course degrees true, concentrations as in firmware/wire.py (pm25_ugm3, no2_ppb, co_ppm, ...).
"""

import bisect
import json
import math
import os
import random
import threading
import tomllib
from dataclasses import dataclass, field

DEFAULT_WORLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worlds", "shuangjing.toml")

_M_PER_DEG_LAT = 110_574.0


class WorldError(ValueError):
    """A world file that cannot be used, with a message naming the key."""


class Proj:
    """Local metres east/north of (lat0, lon0), equirectangular at latitude lat_c (error < 1 mm
    over a district of a few km)."""

    def __init__(self, lat0, lon0, lat_c=None):
        self.lat0, self.lon0 = lat0, lon0
        self.m_per_deg_lon = 111_320.0 * math.cos(math.radians(lat0 if lat_c is None else lat_c))

    def xy(self, lat, lon):
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * _M_PER_DEG_LAT

    def latlon(self, x, y):
        return self.lat0 + y / _M_PER_DEG_LAT, self.lon0 + x / self.m_per_deg_lon


def local_hour(t, utc_offset_h=None):
    return ((t / 3600.0) + (LOCAL_UTC_OFFSET_H if utc_offset_h is None else utc_offset_h)) % 24.0


def local_day_number(t, utc_offset_h):
    """Days since 1970-01-01 in local time (the calendar day t falls on locally)."""
    return int(math.floor((t + utc_offset_h * 3600.0) / 86400.0))


def local_midnight_s(t, utc_offset_h):
    """Unix time of the local midnight that starts the local day of t."""
    return local_day_number(t, utc_offset_h) * 86400 - int(round(utc_offset_h * 3600))


class Route:
    """A closed polyline; s is the distance along it in metres (taken modulo the length)."""

    def __init__(self, points=None, proj=None, name="loop"):
        points = ROUTE if points is None else tuple(tuple(p) for p in points)
        self.name = name
        self.points = points
        self.proj = proj or _DEFAULT_PROJ
        self.xy = [self.proj.xy(lat, lon) for lat, lon, _ in points]
        n = len(points)
        self.s_start = []
        s = 0.0
        for i in range(n):
            self.s_start.append(s)
            (x0, y0), (x1, y1) = self.xy[i], self.xy[(i + 1) % n]
            s += math.hypot(x1 - x0, y1 - y0)
        self.length_m = s
        self.lights_s = [self.s_start[i] for i in range(n) if points[i][2]]

    def at(self, s):
        """(lat, lon, course_deg) at distance s along the loop."""
        s %= self.length_m
        i = bisect.bisect_right(self.s_start, s) - 1
        n = len(self.xy)
        (x0, y0), (x1, y1) = self.xy[i], self.xy[(i + 1) % n]
        seg = math.hypot(x1 - x0, y1 - y0)
        f = (s - self.s_start[i]) / seg
        lat, lon = self.proj.latlon(x0 + f * (x1 - x0), y0 + f * (y1 - y0))
        course = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        return lat, lon, course


@dataclass(frozen=True)
class VehicleState:
    t: float
    lat: float
    lon: float
    alt_m: float
    speed_kmh: float
    course_deg: float  # direction of the street even when stopped
    s_m: float         # distance driven since the start


class Vehicle:
    """Drives the route lap after lap from t_start: trapezoidal speed profiles between traffic
    lights (cruise 20-50 km/h, accelerate 1.0-2.0 m/s^2, brake 1.5-2.5 m/s^2), red lights at
    about 60 % of junctions with stops of 20-60 s, corners taken at <= 20 km/h on green.

    The motion is a list of phases (t_begin, s_begin, v_begin m/s, accel m/s^2) generated lazily
    from one random stream, so it does not depend on the order of queries.
    """

    def __init__(self, route, t_start, seed, depart_after_s=5.0):
        self.route = route
        self.t_start = float(t_start)
        self._rng = random.Random("vehicle:%s" % seed)
        self._lock = threading.Lock()
        self._t = [self.t_start]          # phase begin times
        self._ph = [(0.0, 0.0, 0.0)]      # (s_begin, v_begin, accel)
        self._t_end = self.t_start + depart_after_s   # end of the generated profile
        self._s_end = 0.0
        self._v_end = 0.0

    def _add(self, dt, a):
        s0, v0 = self._s_end, self._v_end
        self._t.append(self._t_end)
        self._ph.append((s0, v0, a))
        self._t_end += dt
        self._s_end = s0 + v0 * dt + 0.5 * a * dt * dt
        self._v_end = v0 + a * dt

    def _extend_one_leg(self):
        rng = self._rng
        L = self.route.length_m
        lap = math.floor(self._s_end / L + 1e-9)
        here = self._s_end - lap * L
        nxt = [s for s in self.route.lights_s if s > here + 1.0]
        s_goal = lap * L + (nxt[0] if nxt else L + self.route.lights_s[0])
        dist = s_goal - self._s_end
        v_s = self._v_end
        v_c = rng.uniform(20.0, 50.0) / 3.6
        acc = rng.uniform(1.0, 2.0)
        brk = rng.uniform(1.5, 2.5)
        red = rng.random() < 0.6
        stop_s = rng.uniform(20.0, 60.0)
        v_e = 0.0 if red else min(v_c, 20.0 / 3.6)
        a1 = acc if v_c >= v_s else -brk
        d1 = abs(v_c * v_c - v_s * v_s) / (2 * abs(a1))
        d3 = (v_c * v_c - v_e * v_e) / (2 * brk)
        if d1 + d3 > dist:  # legs are > 1 km, so this only guards odd routes
            v_c = max(v_s, v_e)
            a1, d1, d3 = acc, 0.0, (v_c * v_c - v_e * v_e) / (2 * brk)
        if d1 > 0:
            self._add(abs(v_c - v_s) / abs(a1), a1)
        self._v_end = v_c
        self._add((dist - d1 - d3) / v_c, 0.0)
        if d3 > 0:
            self._add((v_c - v_e) / brk, -brk)
        # Land exactly on the junction (floating error would otherwise accumulate over laps).
        self._s_end, self._v_end = s_goal, v_e
        if red:
            self._add(stop_s, 0.0)

    def state(self, t):
        """VehicleState at virtual time t (parked at the start before t_start)."""
        with self._lock:
            while self._t_end <= t:
                self._extend_one_leg()
            i = max(0, bisect.bisect_right(self._t, t) - 1)
            t0 = self._t[i]
            s0, v0, a = self._ph[i]
        dt = max(0.0, t - t0)
        v = max(0.0, v0 + a * dt)
        s = s0 + v0 * dt + 0.5 * a * dt * dt
        lat, lon, course = self.route.at(s)
        frac = (s % self.route.length_m) / self.route.length_m
        # The streets here are flat: about 40 m above sea level, a metre or two of relief.
        alt = 40.0 + 1.5 * math.sin(2 * math.pi * frac * 2) + 0.5 * math.sin(2 * math.pi * frac * 7)
        return VehicleState(t, lat, lon, alt, v * 3.6, course, s)


@dataclass(frozen=True)
class Hotspot:
    name: str
    lat: float
    lon: float
    sigma_m: float
    add: dict          # channel -> increase at the centre
    hours: tuple = (0.0, 24.0)   # local hours when active (outside: 20 %)
    appear_day: int | None = None    # campaign day it appears (None: always there)
    cleanup_day: int | None = None   # campaign day it is gone from (None: never cleaned up)

    def present(self, day):
        """Whether the spot exists on campaign day `day` (None: outside a campaign)."""
        if day is None:
            return True
        if self.appear_day is not None and day < self.appear_day:
            return False
        return self.cleanup_day is None or day < self.cleanup_day

    def weight(self, t, lat, lon, hour=None, day=None):
        """Share of `add` at (lat, lon) at time t; hour = local hour (default: Beijing time),
        day = campaign day (None: always present)."""
        if not self.present(day):
            return 0.0
        dx = (lon - self.lon) * 111_320.0 * math.cos(math.radians(self.lat))
        dy = (lat - self.lat) * _M_PER_DEG_LAT
        w = math.exp(-(dx * dx + dy * dy) / (2 * self.sigma_m ** 2))
        h = local_hour(t) if hour is None else hour
        if not (self.hours[0] <= h < self.hours[1]):
            w *= 0.2
        return w

CHANNELS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "n03_per_dl", "n05_per_dl", "n10_per_dl",
            "n25_per_dl", "n50_per_dl", "n100_per_dl", "co2_ppm", "o3_ppb", "no2_ppb", "so2_ppb",
            "co_ppm", "hcho_ppb", "odour_ou", "noise_dba", "temp_c", "rh_pct")


class PollutionField:
    """True value of every channel at (t, lat, lon): background with a diurnal cycle and slow
    seeded fluctuations, plus Gaussian hotspots. O3 is the oxidant left after NO2 titration, so it
    falls where NO2 rises (traffic corners)."""

    def __init__(self, seed, hotspots=None, utc_offset_h=None, day_to_day_sd=0.0, day0_s=None):
        rng = random.Random("field:%s" % seed)
        self.seed = seed
        self.hotspots = HOTSPOTS if hotspots is None else tuple(hotspots)
        self.utc_offset_h = LOCAL_UTC_OFFSET_H if utc_offset_h is None else utc_offset_h
        self.day_to_day_sd = float(day_to_day_sd)
        # Unix time of campaign day 0's local midnight; None: every hotspot always present.
        self.day0_s = day0_s
        self._day_factor = {}
        # Slow fluctuations: a few sines per channel, periods 7-60 minutes.
        self._wiggle = {name: [(rng.uniform(420, 3600), rng.uniform(0, 2 * math.pi))
                               for _ in range(3)] for name in ("pm", "gas", "met")}

    def _w(self, key, t):
        return sum(math.sin(2 * math.pi * t / p + ph) for p, ph in self._wiggle[key]) / 3.0

    def campaign_day(self, t):
        if self.day0_s is None:
            return None
        return int(math.floor((t - self.day0_s) / 86400.0))

    def day_factor(self, t):
        """The weather's factor on the district's level for the local day of t (1 without
        day-to-day variation); a function of the calendar day and the seed only."""
        if not self.day_to_day_sd:
            return 1.0
        n = local_day_number(t, self.utc_offset_h)
        f = self._day_factor.get(n)
        if f is None:
            g = random.Random("day:%s:%d" % (self.seed, n)).gauss(0.0, 1.0)
            f = self._day_factor[n] = math.exp(self.day_to_day_sd * max(-2.5, min(2.5, g)))
        return f

    def at(self, t, lat, lon):
        h = local_hour(t, self.utc_offset_h)
        k = self.day_factor(t)
        cday = self.campaign_day(t)
        day = max(0.0, math.sin(math.pi * (h - 6.0) / 13.0)) if 6.0 <= h <= 19.0 else 0.0
        rush = math.exp(-((h - 8.0) / 1.5) ** 2) + 1.2 * math.exp(-((h - 18.0) / 1.5) ** 2)
        pm_bg = k * (30.0 + 10.0 * math.cos(2 * math.pi * (h - 23.0) / 24.0) + 6.0 * self._w("pm", t))
        v = {
            "pm1_ugm3": 0.7 * pm_bg,
            "pm25_ugm3": pm_bg,
            "pm10_ugm3": 1.6 * pm_bg,
            "co2_ppm": 425.0 + 15.0 * (1.0 - day) + 5.0 * self._w("gas", t),
            "no2_ppb": k * (22.0 + 12.0 * rush + 4.0 * self._w("gas", t)),
            "so2_ppb": k * (3.0 + 0.8 * self._w("gas", t + 900.0)),
            "co_ppm": k * (0.5 + 0.25 * rush),
            "hcho_ppb": 8.0 + 4.0 * day,
            "odour_ou": 0.0,
            "noise_dba": 55.0 + 6.0 * day + 4.0 * rush,
            "temp_c": 6.0 + 6.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0) + 0.5 * self._w("met", t),
        }
        for hs in self.hotspots:
            w = hs.weight(t, lat, lon, h, cday)
            if w > 1e-4:
                for k, dv in hs.add.items():
                    v[k] += w * dv
        ox_ppb = 55.0 + 35.0 * day          # O3 + NO2 ~ conserved locally (titration by NO)
        v["o3_ppb"] = max(2.0, ox_ppb - 0.8 * v["no2_ppb"])
        v["rh_pct"] = min(98.0, max(10.0, 50.0 - 2.0 * (v["temp_c"] - 6.0) + 3.0 * self._w("met", t + 1e4)))
        pm1, pm25, pm10 = v["pm1_ugm3"], v["pm25_ugm3"], v["pm10_ugm3"]
        # Counts per 0.1 L, non-increasing with size (as a PMS5003 reports them).
        v["n03_per_dl"] = 60.0 * pm25 + 2.0 * pm10
        v["n05_per_dl"] = 18.0 * pm25 + 1.0 * pm10
        v["n10_per_dl"] = 4.0 * pm1 + 0.5 * pm10
        v["n25_per_dl"] = 0.5 * pm25 + 0.4 * (pm10 - pm25)
        v["n50_per_dl"] = 0.1 * (pm10 - pm25)
        v["n100_per_dl"] = 0.03 * (pm10 - pm25)
        return v


# --------------------------------------------------------------------------- world files

@dataclass(frozen=True)
class Shift:
    start_h: float      # local hour the shift starts (before jitter)
    hours: float        # length
    jitter_min: float   # the start moves by up to +- this many minutes, drawn per day


@dataclass(frozen=True)
class VehicleSpec:
    device: str
    route: str
    shifts: tuple
    skip_day_probability: float = 0.0
    detour_days: dict = field(default_factory=dict)   # route name -> campaign days driving it

    def route_on(self, day):
        for name, days in self.detour_days.items():
            if day in days:
                return name
        return self.route


@dataclass
class WorldSpec:
    name: str
    utc_offset_h: float
    bounds: tuple                  # (lat_min, lat_max, lon_min, lon_max)
    day_to_day_sd: float
    routes: dict                   # name -> ((lat, lon, signalled), ...), in file order
    vehicles: tuple                # VehicleSpec, in file order
    hotspots: tuple                # Hotspot, the traffic ones included
    path: str = ""

    def proj(self):
        lat_min, lat_max, lon_min, _ = self.bounds
        return Proj(lat_min, lon_min, (lat_min + lat_max) / 2.0)

    def route(self, name=None):
        name = next(iter(self.routes)) if name is None else name
        return Route(self.routes[name], self.proj(), name=name)

    def field(self, seed, day0_s=None):
        return PollutionField(seed, self.hotspots, self.utc_offset_h, self.day_to_day_sd, day0_s)

    def fleet(self, k):
        """The first k vehicles; beyond the listed ones the list repeats with new device ids
        (<prefix of the first id>-NNN)."""
        if k < 1:
            raise WorldError("need at least one vehicle")
        out = list(self.vehicles[:k])
        prefix = self.vehicles[0].device.rsplit("-", 1)[0]
        taken = {v.device for v in self.vehicles}
        n = len(self.vehicles)
        i = 0
        while len(out) < k:
            base = self.vehicles[i % len(self.vehicles)]
            n += 1
            dev = "%s-%03d" % (prefix, n)
            while dev in taken:
                n += 1
                dev = "%s-%03d" % (prefix, n)
            taken.add(dev)
            out.append(VehicleSpec(dev, base.route, base.shifts, base.skip_day_probability, {}))
            i += 1
        return out

    def truth(self):
        """The planted hotspots as plain data (ground truth of a run)."""
        return [{"name": h.name, "lat": h.lat, "lon": h.lon, "sigma_m": h.sigma_m,
                 "add": dict(h.add), "hours": list(h.hours), "appear_day": h.appear_day,
                 "cleanup_day": h.cleanup_day} for h in self.hotspots]

    def roads_geojson(self):
        """The routes as a GeoJSON FeatureCollection of closed LineStrings (what a city office's
        road file would hold for these streets)."""
        feats = []
        for name, pts in self.routes.items():
            coords = [[lon, lat] for lat, lon, _ in pts] + [[pts[0][1], pts[0][0]]]
            feats.append({"type": "Feature", "properties": {"name": name},
                          "geometry": {"type": "LineString", "coordinates": coords}})
        return {"type": "FeatureCollection", "features": feats}


def _num(d, key, where, default=None, lo=None, hi=None):
    v = d.get(key, default)
    if v is None:
        raise WorldError("%s: %s is required" % (where, key))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise WorldError("%s: %s must be a number, got %r" % (where, key, v))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise WorldError("%s: %s = %r is outside %s..%s" % (where, key, v, lo, hi))
    return float(v)


def _hhmm(text, where):
    try:
        hh, mm = str(text).split(":")
        h = int(hh) + int(mm) / 60.0
    except ValueError:
        raise WorldError("%s: start must be \"HH:MM\", got %r" % (where, text)) from None
    if not 0 <= h < 24:
        raise WorldError("%s: start %r is not a time of day" % (where, text))
    return h


def _add(d, where):
    if not isinstance(d, dict) or not d:
        raise WorldError("%s: add must be a table of channel = increase" % where)
    out = {}
    for k, v in d.items():
        if k not in CHANNELS:
            raise WorldError("%s: unknown channel %r (known: %s)" % (where, k, ", ".join(CHANNELS)))
        out[k] = _num(d, k, where)
    return out


def parse_world(doc, path=""):
    """A WorldSpec from the parsed file (dict). Raises WorldError naming the bad key."""
    if not isinstance(doc, dict):
        raise WorldError("%s: not a table" % path)
    b = doc.get("bounds")
    if not isinstance(b, dict):
        raise WorldError("[bounds] with lat_min, lat_max, lon_min, lon_max is required")
    bounds = tuple(_num(b, k, "[bounds]", lo=-180, hi=180)
                   for k in ("lat_min", "lat_max", "lon_min", "lon_max"))
    if not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
        raise WorldError("[bounds]: need lat_min < lat_max and lon_min < lon_max")

    def inside(lat, lon, where):
        if not (bounds[0] <= lat <= bounds[1] and bounds[2] <= lon <= bounds[3]):
            raise WorldError("%s: (%.5f, %.5f) is outside [bounds]" % (where, lat, lon))

    utc = _num(doc, "utc_offset_h", "top level", 0.0, -12, 14)
    bg = doc.get("background", {}) or {}
    sd = _num(bg, "day_to_day_sd", "[background]", 0.0, 0.0, 2.0)
    routes = {}
    for i, r in enumerate(doc.get("routes") or []):
        where = "[[routes]] #%d" % (i + 1)
        name = r.get("name")
        if not isinstance(name, str) or not name or name in routes:
            raise WorldError("%s: a unique name is required" % where)
        pts = []
        for p in r.get("points") or []:
            if not (isinstance(p, (list, tuple)) and len(p) in (2, 3)):
                raise WorldError("%s %s: points are [lat, lon] or [lat, lon, signalled]" % (where, name))
            lat, lon = float(p[0]), float(p[1])
            inside(lat, lon, "%s %s" % (where, name))
            pts.append((lat, lon, bool(p[2]) if len(p) == 3 else False))
        if len(pts) < 3:
            raise WorldError("%s %s: a closed route needs at least 3 points" % (where, name))
        if not any(p[2] for p in pts):
            raise WorldError("%s %s: needs at least one signalled junction (where the vehicle "
                             "may stop)" % (where, name))
        routes[name] = tuple(pts)
    if not routes:
        raise WorldError("at least one [[routes]] entry is required")
    vehicles = []
    for i, v in enumerate(doc.get("vehicles") or []):
        where = "[[vehicles]] #%d" % (i + 1)
        dev = v.get("device")
        if not (isinstance(dev, str) and 1 <= len(dev) <= 32 and dev.isprintable()
                and not any(c in dev for c in "/+# ")):
            raise WorldError("%s: device must be 1..32 printable characters without / + # or "
                             "spaces" % where)
        if dev in {x.device for x in vehicles}:
            raise WorldError("%s: device %r listed twice" % (where, dev))
        route = v.get("route", next(iter(routes)))
        if route not in routes:
            raise WorldError("%s: unknown route %r" % (where, route))
        shifts = []
        for j, sh in enumerate(v.get("shifts") or []):
            w2 = "%s shift %d" % (where, j + 1)
            shifts.append(Shift(_hhmm(sh.get("start"), w2), _num(sh, "hours", w2, lo=0.1, hi=24),
                                _num(sh, "jitter_min", w2, 0.0, 0.0, 600)))
        if not shifts:
            raise WorldError("%s: at least one shift is required" % where)
        det = {}
        for rname, days in (v.get("detour_days") or {}).items():
            if rname not in routes:
                raise WorldError("%s: detour_days names unknown route %r" % (where, rname))
            det[rname] = tuple(int(d) for d in days)
        vehicles.append(VehicleSpec(dev, route, tuple(shifts),
                                    _num(v, "skip_day_probability", where, 0.0, 0.0, 1.0), det))
    if not vehicles:
        raise WorldError("at least one [[vehicles]] entry is required")
    hotspots = []
    for i, h in enumerate(doc.get("hotspots") or []):
        where = "[[hotspots]] #%d" % (i + 1)
        name = h.get("name")
        if not isinstance(name, str) or not name or name in {x.name for x in hotspots}:
            raise WorldError("%s: a unique name is required" % where)
        lat, lon = _num(h, "lat", where), _num(h, "lon", where)
        inside(lat, lon, where)
        hours = tuple(float(x) for x in h.get("hours", (0.0, 24.0)))
        if len(hours) != 2 or not 0 <= hours[0] < hours[1] <= 24:
            raise WorldError("%s: hours must be [from, to) local hours" % where)
        ad, cd = h.get("appear_day"), h.get("cleanup_day")
        hotspots.append(Hotspot(name, lat, lon, _num(h, "sigma_m", where, lo=1.0),
                                _add(h.get("add"), where), hours,
                                None if ad is None else int(ad), None if cd is None else int(cd)))
    tr = doc.get("traffic")
    if tr:
        sig = _num(tr, "sigma_m", "[traffic]", lo=1.0)
        add = _add(tr.get("add"), "[traffic]")
        seen = []
        for k, (rname, pts) in enumerate(routes.items()):
            for i, (lat, lon, light) in enumerate(pts):
                if not light or any(abs(lat - a) * _M_PER_DEG_LAT < 10
                                    and abs(lon - b) * 85_000 < 10 for a, b in seen):
                    continue
                seen.append((lat, lon))
                name = ("traffic_light_%d" % i) if k == 0 else ("%s_light_%d" % (rname, i))
                hotspots.append(Hotspot(name, lat, lon, sig, dict(add)))
    return WorldSpec(str(doc.get("name", "world")), utc, bounds, sd, routes, tuple(vehicles),
                     tuple(hotspots), str(path))


def load_world(path=None):
    """Read a world file (TOML, or JSON by its .json suffix); the default world without a path."""
    path = DEFAULT_WORLD if path is None else str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WorldError("world file %s: %s" % (path, e.strerror)) from None
    try:
        doc = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise WorldError("world file %s: %s" % (path, e)) from None
    try:
        return parse_world(doc, path)
    except WorldError as e:
        raise WorldError("world file %s: %s" % (path, e)) from None
    except (TypeError, AttributeError) as e:
        raise WorldError("world file %s: unexpected structure (%s)" % (path, e)) from None


# The default world's figures, as module constants (the firmware's simulated runs use them).
DEFAULT_SPEC = load_world()
LAT_MIN, LAT_MAX, LON_MIN, LON_MAX = DEFAULT_SPEC.bounds
LOCAL_UTC_OFFSET_H = DEFAULT_SPEC.utc_offset_h
_DEFAULT_PROJ = DEFAULT_SPEC.proj()
ROUTE = next(iter(DEFAULT_SPEC.routes.values()))
HOTSPOTS = DEFAULT_SPEC.hotspots


class World:
    """Route + vehicle + field for one run. t_start: virtual Unix seconds when the patrol starts.
    spec: a WorldSpec (default: the default world); the vehicle drives its first route. Campaign
    day 0 (hotspots' appear/cleanup days) is the local date of t_start."""

    def __init__(self, t_start, seed=1, spec=None, route=None):
        self.spec = DEFAULT_SPEC if spec is None else spec
        self.seed = seed
        self.t_start = float(t_start)
        self.route = self.spec.route(route)
        self.vehicle = Vehicle(self.route, t_start, seed)
        self.field = self.spec.field(seed, local_midnight_s(self.t_start, self.spec.utc_offset_h))

    def vehicle_state(self, t):
        return self.vehicle.state(t)

    def channels(self, t, lat, lon):
        return self.field.at(t, lat, lon)

    def channels_at_vehicle(self, t):
        st = self.vehicle.state(t)
        return st, self.field.at(t, st.lat, st.lon)
