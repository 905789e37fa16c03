"""The box's world: a patrol vehicle driving a closed route through Shuangjing (Chaoyang district,
Beijing; about 39.88-39.90 N, 116.45-116.48 E) and the pollution field it drives through.

Everything is a deterministic function of (seed, start time, virtual time), so two runs with the
same seed see the same street, the same red lights and the same hotspots, and a model can ask
for the truth at any virtual time in any order.

Units are in the names: lat/lon degrees (WGS84), altitude metres above mean sea level, speed km/h,
course degrees true, concentrations as in firmware/wire.py (pm25_ugm3, no2_ppb, co_ppm, ...).
"""

import bisect
import math
import random
import threading
from dataclasses import dataclass

# The Shuangjing box (DESIGN.md). The route and every hotspot lie inside it.
LAT_MIN, LAT_MAX = 39.88, 39.90
LON_MIN, LON_MAX = 116.45, 116.48

LOCAL_UTC_OFFSET_H = 8  # Beijing time; the diurnal cycles follow local hours

# A closed patrol loop on the streets around Shuangjing: Guangqu Road (east-west, north side),
# Xidawang Road (north-south, east side), the Jinsong streets (south side) and the East 3rd Ring
# Road (west side). (lat, lon, traffic light at this point?). The corners are signalled
# junctions; the mid-block points only bend the line.
ROUTE = (
    (39.89370, 116.46120, True),   # Shuangjing Bridge: E 3rd Ring x Guangqu Rd
    (39.89392, 116.46900, False),  # Guangqu Rd at Shuangjing East St
    (39.89420, 116.47680, True),   # Guangqu Rd x Xidawang Rd
    (39.88850, 116.47690, False),  # Xidawang Rd
    (39.88280, 116.47700, True),   # Xidawang Rd x Jinsong South St
    (39.88260, 116.46900, False),  # Jinsong South St
    (39.88220, 116.46150, True),   # Jinsong Bridge: Jinsong South St x E 3rd Ring
    (39.88800, 116.46130, False),  # E 3rd Ring Rd
)

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(39.89))


def _xy(lat, lon):
    """Local metres east/north of the box's south-west corner (equirectangular; error < 1 mm here)."""
    return (lon - LON_MIN) * _M_PER_DEG_LON, (lat - LAT_MIN) * _M_PER_DEG_LAT


def _latlon(x, y):
    return LAT_MIN + y / _M_PER_DEG_LAT, LON_MIN + x / _M_PER_DEG_LON


def local_hour(t):
    return ((t / 3600.0) + LOCAL_UTC_OFFSET_H) % 24.0


class Route:
    """The closed polyline; s is the distance along it in metres (taken modulo the length)."""

    def __init__(self, points=ROUTE):
        self.points = points
        self.xy = [_xy(lat, lon) for lat, lon, _ in points]
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
        lat, lon = _latlon(x0 + f * (x1 - x0), y0 + f * (y1 - y0))
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

    def weight(self, t, lat, lon):
        x0, y0 = _xy(self.lat, self.lon)
        x, y = _xy(lat, lon)
        d2 = (x - x0) ** 2 + (y - y0) ** 2
        w = math.exp(-d2 / (2 * self.sigma_m ** 2))
        h = local_hour(t)
        if not (self.hours[0] <= h < self.hours[1]):
            w *= 0.2
        return w


def _traffic(name, lat, lon):
    return Hotspot(name, lat, lon, 90.0,
                   {"pm1_ugm3": 6.0, "pm25_ugm3": 15.0, "pm10_ugm3": 25.0, "no2_ppb": 35.0,
                    "co_ppm": 0.6, "co2_ppm": 40.0, "noise_dba": 9.0})


HOTSPOTS = (
    # Bare ground and earthworks east of Shuangjing East St: dust, by day.
    Hotspot("construction_site", 39.88750, 116.47450, 200.0,
            {"pm1_ugm3": 10.0, "pm25_ugm3": 60.0, "pm10_ugm3": 180.0, "noise_dba": 6.0},
            hours=(7.0, 19.0)),
    # A waste transfer point on the south side: formaldehyde and odour.
    Hotspot("waste_transfer_point", 39.88290, 116.46600, 120.0,
            {"hcho_ppb": 45.0, "odour_ou": 30.0, "pm25_ugm3": 5.0, "so2_ppb": 2.0}),
) + tuple(_traffic("traffic_light_%d" % i, lat, lon)
          for i, (lat, lon, light) in enumerate(ROUTE) if light)

CHANNELS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "n03_per_dl", "n05_per_dl", "n10_per_dl",
            "n25_per_dl", "n50_per_dl", "n100_per_dl", "co2_ppm", "o3_ppb", "no2_ppb", "so2_ppb",
            "co_ppm", "hcho_ppb", "odour_ou", "noise_dba", "temp_c", "rh_pct")


class PollutionField:
    """True value of every channel at (t, lat, lon): background with a diurnal cycle and slow
    seeded fluctuations, plus Gaussian hotspots. O3 is the oxidant left after NO2 titration, so it
    falls where NO2 rises (traffic corners)."""

    def __init__(self, seed, hotspots=HOTSPOTS):
        rng = random.Random("field:%s" % seed)
        self.hotspots = hotspots
        # Slow fluctuations: a few sines per channel, periods 7-60 minutes.
        self._wiggle = {name: [(rng.uniform(420, 3600), rng.uniform(0, 2 * math.pi))
                               for _ in range(3)] for name in ("pm", "gas", "met")}

    def _w(self, key, t):
        return sum(math.sin(2 * math.pi * t / p + ph) for p, ph in self._wiggle[key]) / 3.0

    def at(self, t, lat, lon):
        h = local_hour(t)
        day = max(0.0, math.sin(math.pi * (h - 6.0) / 13.0)) if 6.0 <= h <= 19.0 else 0.0
        rush = math.exp(-((h - 8.0) / 1.5) ** 2) + 1.2 * math.exp(-((h - 18.0) / 1.5) ** 2)
        pm_bg = 30.0 + 10.0 * math.cos(2 * math.pi * (h - 23.0) / 24.0) + 6.0 * self._w("pm", t)
        v = {
            "pm1_ugm3": 0.7 * pm_bg,
            "pm25_ugm3": pm_bg,
            "pm10_ugm3": 1.6 * pm_bg,
            "co2_ppm": 425.0 + 15.0 * (1.0 - day) + 5.0 * self._w("gas", t),
            "no2_ppb": 22.0 + 12.0 * rush + 4.0 * self._w("gas", t),
            "so2_ppb": 3.0 + 0.8 * self._w("gas", t + 900.0),
            "co_ppm": 0.5 + 0.25 * rush,
            "hcho_ppb": 8.0 + 4.0 * day,
            "odour_ou": 0.0,
            "noise_dba": 55.0 + 6.0 * day + 4.0 * rush,
            "temp_c": 6.0 + 6.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0) + 0.5 * self._w("met", t),
        }
        for hs in self.hotspots:
            w = hs.weight(t, lat, lon)
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


class World:
    """Route + vehicle + field for one run. t_start: virtual Unix seconds when the patrol starts."""

    def __init__(self, t_start, seed=1):
        self.seed = seed
        self.t_start = float(t_start)
        self.route = Route()
        self.vehicle = Vehicle(self.route, t_start, seed)
        self.field = PollutionField(seed)

    def vehicle_state(self, t):
        return self.vehicle.state(t)

    def channels(self, t, lat, lon):
        return self.field.at(t, lat, lon)

    def channels_at_vehicle(self, t):
        st = self.vehicle.state(t)
        return st, self.field.at(t, st.lat, st.lon)
