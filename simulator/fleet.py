"""A fleet over weeks: the samples K boxes would send over D days, without running the firmware.

For each vehicle and campaign day the shifts of its world file (jittered start, days without a
patrol) are laid out; during a shift the box samples every 10 s on the UTC grid (as the firmware
does) what the world holds at the vehicle's position, through the behaviour of the full kit's
modules:

- warm-up after the ignition turns the box on (the firmware drivers' WARMUP_MS: PMS5003 30 s,
  ZE03/ZE08 180 s, SCD41 5.5 s): the channel carries `warming_up` and no value;
- measurement noise (below, per module) and the modules' own quantisation (PMS5003 integer
  ug/m3 through simulator.models.pms5003.reading_from_world, ZE03 in 0.01 ppm for O3/NO2/SO2 and
  0.1 ppm for CO, ZE08 integer ppb, SCD41 integer ppm, the sound meter's 0.1 dB register polled
  every second and energy-averaged over the 10 s window into LAeq, LAmin, LAmax);
- the occasional failed channel: a module that stops answering for a stretch of a shift
  (`no_data`), single bad frames (`checksum_error`);
- the GNSS fix with the receiver's jitter (1 m, as simulator.models.gnss);
- coverage gaps: the samples taken while the modem had no network are held in the journal and
  sent after it, the newest first and the rest as catch-up batches (KIND_BATCH, 60 samples),
  byte for byte as they were journaled, as the firmware does.

Everything is a function of (world, seed, campaign start): two runs give the same bytes.
Sequence numbers run on per device over the whole campaign (they survive reboots on a box), so
(device, seq) and (device, time) are unique.
"""

import math
import random
from dataclasses import dataclass

from ..firmware import wire
from ..firmware.drivers.pms5003 import PMS5003 as _PMSDriver
from ..firmware.drivers.scd4x import SCD4x as _SCDDriver
from ..firmware.drivers.ze03 import ZE03 as _ZE03Driver
from ..firmware.drivers.ze08 import ZE08 as _ZE08Driver
from .models.pms5003 import reading_from_world
from .models.ze03 import GASES
from .world import Vehicle, local_midnight_s

PERIOD_S = 10
BATCH_MAX_SAMPLES = 60          # boards' batch_max_samples
GNSS_JITTER_M = 1.0             # simulator.models.gnss default

# Measurement noise, 1 sigma. PMS5003: the datasheet's consistency is +-10 % / +-10 ug/m3; the
# sensor's reading scatters less than that between neighbouring seconds: 8 % and 1.5 ug/m3.
# Electrochemical cells (ZE03): a few ppb of zero noise; CO 0.05 ppm. ZE08: 3 ppb. SCD41:
# +-(40 ppm + 5 %) accuracy, repeatability about 10 ppm. Sound meter: 2 dB per 1 s poll (as the
# Modbus model). SHT4x: 0.1 degC, 1 %RH.
PM_REL_SD = 0.08
PM_ABS_SD = 1.5
GAS_SD = {"o3": 3.0, "no2": 3.0, "so2": 1.5, "co": 0.05}
HCHO_SD = 3.0
CO2_SD = 10.0
NOISE_POLL_SD_DB = 2.0
TEMP_SD = 0.1
RH_SD = 1.0

# Failures: per shift and module, the chance that the module stops answering for a stretch of
# 2-30 minutes; per sample, the chance of one bad frame.
MODULE_OUTAGE_PER_SHIFT = 0.04
BAD_FRAME_PER_SAMPLE = 0.001
# Coverage gaps: per shift, the chance of one gap of 3-25 minutes without network.
NETWORK_GAP_PER_SHIFT = 0.35

MODULES = ("pms5003", "scd41", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "noise",
           "sht4x")
_WARMUP_S = {"pms5003": _PMSDriver.WARMUP_MS / 1000.0, "scd41": _SCDDriver.WARMUP_MS / 1000.0,
             "ze03_o3": _ZE03Driver.WARMUP_MS / 1000.0, "ze03_no2": _ZE03Driver.WARMUP_MS / 1000.0,
             "ze03_so2": _ZE03Driver.WARMUP_MS / 1000.0, "ze03_co": _ZE03Driver.WARMUP_MS / 1000.0,
             "ze08": _ZE08Driver.WARMUP_MS / 1000.0, "noise": 0.0, "sht4x": 0.0}
_PMS_CH = ((wire.CH_PM1, "pm1_ugm3"), (wire.CH_PM25, "pm25_ugm3"), (wire.CH_PM10, "pm10_ugm3"),
           (wire.CH_PM1_CF1, "pm1_cf1_ugm3"), (wire.CH_PM25_CF1, "pm25_cf1_ugm3"),
           (wire.CH_PM10_CF1, "pm10_cf1_ugm3"), (wire.CH_N03, "n03_per_dl"),
           (wire.CH_N05, "n05_per_dl"), (wire.CH_N10, "n10_per_dl"), (wire.CH_N25, "n25_per_dl"),
           (wire.CH_N50, "n50_per_dl"), (wire.CH_N100, "n100_per_dl"))
_GAS_CH = {"o3": wire.CH_O3, "no2": wire.CH_NO2, "so2": wire.CH_SO2, "co": wire.CH_CO}
_MODULE_CH = {"pms5003": tuple(c for c, _ in _PMS_CH), "scd41": (wire.CH_CO2,),
              "ze03_o3": (wire.CH_O3,), "ze03_no2": (wire.CH_NO2,), "ze03_so2": (wire.CH_SO2,),
              "ze03_co": (wire.CH_CO,), "ze08": (wire.CH_HCHO,),
              "noise": (wire.CH_NOISE, wire.CH_NOISE_LMIN, wire.CH_NOISE_LMAX),
              "sht4x": (wire.CH_TEMP, wire.CH_RH)}


@dataclass(frozen=True)
class ShiftPlan:
    device: str
    day: int              # campaign day
    shift: int            # index in the vehicle's shifts
    route: str
    t_on_s: int           # ignition: the box powers on (10 s grid)
    t_off_s: int          # last sample time


def campaign_start_s(spec, days, end_day_s=None, now_s=None):
    """Unix time of campaign day 0's local midnight: the `days` local days ending at the local
    midnight that starts today (or that starts the local day of end_day_s)."""
    import time
    ref = (time.time() if now_s is None else now_s) if end_day_s is None else end_day_s
    return local_midnight_s(ref, spec.utc_offset_h) - days * 86400


def plan(spec, vehicles, days, day0_s, seed=1):
    """Every shift of every vehicle, in time order per vehicle."""
    out = []
    for v in vehicles:
        for d in range(days):
            rng = random.Random("shift:%s:%s:%d" % (seed, v.device, d))
            route = v.route_on(d)
            # a detour day is planned: it is driven whatever the skip draw says
            if rng.random() < v.skip_day_probability and route == v.route:
                continue
            last_off = None
            for i, sh in enumerate(v.shifts):
                start_h = sh.start_h + rng.uniform(-sh.jitter_min, sh.jitter_min) / 60.0
                t_on = day0_s + d * 86400 + int(round(start_h * 3600 / PERIOD_S)) * PERIOD_S
                t_off = t_on + int(sh.hours * 3600 / PERIOD_S) * PERIOD_S
                if last_off is not None and t_on <= last_off:   # jitter made shifts overlap
                    t_on = last_off + 600
                    t_off = max(t_off, t_on + 600)
                out.append(ShiftPlan(v.device, d, i, route, t_on, t_off))
                last_off = t_off
    return out


class _Box:
    """Per-device state across the campaign: the next seq."""

    def __init__(self, device):
        self.device = device
        self.dev_b = device.encode()
        self.seq = 1


class FleetSampler:
    """Makes the payloads of a fleet campaign.

        fs = FleetSampler(spec, vehicles=3, days=30, day0_s=..., seed=1)
        for device, payload, n_samples in fs.messages(): ...   # per shift, device by device
    """

    def __init__(self, spec, vehicles, days, day0_s, seed=1):
        self.spec = spec
        self.vehicles = spec.fleet(vehicles) if isinstance(vehicles, int) else list(vehicles)
        self.days = int(days)
        self.day0_s = int(day0_s)
        self.seed = seed
        self.field = spec.field(seed, self.day0_s)
        self.routes = {name: spec.route(name) for name in spec.routes}
        self.shifts = plan(spec, self.vehicles, self.days, self.day0_s, seed)
        self.boxes = {v.device: _Box(v.device) for v in self.vehicles}
        self.counts = {"samples": 0, "live_messages": 0, "batch_messages": 0, "batched_samples": 0,
                       "warming_up": 0, "no_data": 0, "checksum_error": 0}

    def total_samples(self):
        return sum((s.t_off_s - s.t_on_s) // PERIOD_S for s in self.shifts)

    # -- one shift --------------------------------------------------------------------------
    def shift_samples(self, sp):
        """The wire.Sample objects of one shift (new objects; seq assigned)."""
        rng = random.Random("box:%s:%s:%d:%d" % (self.seed, sp.device, sp.day, sp.shift))
        veh = Vehicle(self.routes[sp.route], sp.t_on_s,
                      "%s:%s:%d:%d" % (self.seed, sp.device, sp.day, sp.shift))
        box = self.boxes[sp.device]
        n = (sp.t_off_s - sp.t_on_s) // PERIOD_S
        # module outages in this shift: module -> (first sample index, last)
        down = {}
        for m in MODULES:
            if rng.random() < MODULE_OUTAGE_PER_SHIFT:
                a = rng.randrange(max(1, n))
                down[m] = (a, a + rng.randint(12, 180))
        field = self.field
        gauss = rng.gauss
        out = []
        for k in range(1, n + 1):
            T = sp.t_on_s + k * PERIOD_S
            since_on = T - sp.t_on_s
            st = veh.state(T)
            ch = field.at(T, st.lat, st.lon)
            s = wire.Sample(box.dev_b)
            s.seq = box.seq
            box.seq += 1
            s.t_s2020 = T - wire.EPOCH_2020_UNIX_S
            s.flags = wire.FLAG_CLOCK_FROM_GPS
            s.fix_quality = 1
            s.sats = 9 + int(round(2 * math.sin(T / 97.0) + math.sin(T / 23.0)))
            s.hdop_x10 = int(round(10 * (1.0 + 0.3 * math.sin(T / 53.0) + 0.1 * math.sin(T / 7.0))))
            lat = st.lat + gauss(0.0, GNSS_JITTER_M) / 110_574.0
            lon = st.lon + gauss(0.0, GNSS_JITTER_M) / (111_320.0 * math.cos(math.radians(st.lat)))
            s.lat_e7 = int(round(lat * 1e7))
            s.lon_e7 = int(round(lon * 1e7))
            s.alt_dm = int(round(st.alt_m * 10))
            s.speed_kmh_x10 = int(round(st.speed_kmh * 10))
            s.course_x10 = int(round(st.course_deg * 10)) % 3600 if st.speed_kmh > 0 else wire.COURSE_UNKNOWN
            self._fill(s, ch, since_on, k, down, rng)
            out.append(s)
        self.counts["samples"] += n
        return out

    def _status(self, module, since_on, k, down, rng):
        if since_on < _WARMUP_S[module]:
            return wire.STATUS_WARMING_UP
        d = down.get(module)
        if d is not None and d[0] <= k <= d[1]:
            return wire.STATUS_NO_DATA
        if rng.random() < BAD_FRAME_PER_SAMPLE:
            return wire.STATUS_CHECKSUM_ERROR
        return wire.STATUS_OK

    def _fill(self, s, ch, since_on, k, down, rng):
        gauss = rng.gauss
        c = self.counts
        # PMS5003: one optical measurement, one relative error for every size
        stt = self._status("pms5003", since_on, k, down, rng)
        if stt == wire.STATUS_OK:
            f = 1.0 + gauss(0.0, PM_REL_SD)
            noisy = {key: ch[key] * f for _, key in _PMS_CH if key in ch}
            a = gauss(0.0, PM_ABS_SD)
            noisy["pm1_ugm3"] = max(0.0, noisy["pm1_ugm3"] + 0.7 * a)
            noisy["pm25_ugm3"] = max(noisy["pm1_ugm3"], noisy["pm25_ugm3"] + a)
            noisy["pm10_ugm3"] = max(noisy["pm25_ugm3"], noisy["pm10_ugm3"] + a)
            r = reading_from_world(noisy)
            oor = r["pm25_ugm3"] > 1000
            for i, key in _PMS_CH:
                s.set(i, wire.STATUS_OUT_OF_RANGE if oor else wire.STATUS_OK, r[key])
        else:
            self._count(stt)
            for i, _ in _PMS_CH:
                s.set(i, stt)
        # SCD41
        stt = self._status("scd41", since_on, k, down, rng)
        if stt == wire.STATUS_OK:
            s.set(wire.CH_CO2, stt, max(0, int(round(ch["co2_ppm"] + gauss(0.0, CO2_SD)))))
        else:
            self._count(stt)
            s.set(wire.CH_CO2, stt)
        # ZE03 x4: conc in 10^-decimals ppm, as the Q&A frame carries it
        for gas, chi in _GAS_CH.items():
            stt = self._status("ze03_" + gas, since_on, k, down, rng)
            if stt != wire.STATUS_OK:
                self._count(stt)
                s.set(chi, stt)
                continue
            _, key, per_ppm, _, dec = GASES[gas]
            ppm = max(0.0, (ch[key] + gauss(0.0, GAS_SD[gas])) / per_ppm)
            conc = int(round(ppm * 10 ** dec))
            value = conc * per_ppm / 10 ** dec          # in the channel's unit
            s.set(chi, stt, int(round(value * wire.CHANNELS[chi][1])))
        # ZE08
        stt = self._status("ze08", since_on, k, down, rng)
        if stt == wire.STATUS_OK:
            s.set(wire.CH_HCHO, stt, max(0, int(round(ch["hcho_ppb"] + gauss(0.0, HCHO_SD)))))
        else:
            self._count(stt)
            s.set(wire.CH_HCHO, stt)
        # sound meter: ten 1 s polls of 0.1 dB, energy-averaged
        stt = self._status("noise", since_on, k, down, rng)
        if stt == wire.STATUS_OK:
            lv = [round(ch["noise_dba"] + gauss(0.0, NOISE_POLL_SD_DB), 1) for _ in range(10)]
            laeq = 10.0 * math.log10(sum(10.0 ** (x / 10.0) for x in lv) / 10.0)
            s.set(wire.CH_NOISE, stt, int(round(laeq * 10)))
            s.set(wire.CH_NOISE_LMIN, stt, int(round(min(lv) * 10)))
            s.set(wire.CH_NOISE_LMAX, stt, int(round(max(lv) * 10)))
        else:
            self._count(stt)
            for i in (wire.CH_NOISE, wire.CH_NOISE_LMIN, wire.CH_NOISE_LMAX):
                s.set(i, stt)
        # SHT4x
        stt = self._status("sht4x", since_on, k, down, rng)
        if stt == wire.STATUS_OK:
            s.set(wire.CH_TEMP, stt, int(round((ch["temp_c"] + gauss(0.0, TEMP_SD)) * 100)))
            rh = min(100.0, max(0.0, ch["rh_pct"] + gauss(0.0, RH_SD)))
            s.set(wire.CH_RH, stt, int(round(rh * 100)))
        else:
            self._count(stt)
            s.set(wire.CH_TEMP, stt)
            s.set(wire.CH_RH, stt)

    def _count(self, stt):
        name = wire.STATUS_NAMES[stt]
        self.counts[name] = self.counts.get(name, 0) + 1

    # -- messages -------------------------------------------------------------------------
    def shift_messages(self, sp):
        """[(payload, n_samples), ...] of one shift in the order the box sends them: live
        singles, and after a coverage gap the newest sample first, then the held ones as
        catch-up batches."""
        samples = self.shift_samples(sp)
        rng = random.Random("net:%s:%s:%d:%d" % (self.seed, sp.device, sp.day, sp.shift))
        gap = None
        if len(samples) > 40 and rng.random() < NETWORK_GAP_PER_SHIFT:
            a = rng.randrange(1, len(samples) - 20)
            gap = (a, min(len(samples) - 2, a + rng.randint(18, 150)))
        out = []
        i = 0
        n = len(samples)
        while i < n:
            if gap is not None and i == gap[0]:
                held = samples[gap[0]:gap[1] + 1]
                newest = samples[gap[1] + 1]
                out.append((wire.encode(newest), 1))
                for j in range(0, len(held), BATCH_MAX_SAMPLES):
                    out.append((self.batch(held[j:j + BATCH_MAX_SAMPLES]),
                                len(held[j:j + BATCH_MAX_SAMPLES])))
                i = gap[1] + 2
                continue
            out.append((wire.encode(samples[i]), 1))
            i += 1
        for p, k in out:
            if k > 1 or p[0] == wire.KIND_BATCH:
                self.counts["batch_messages"] += 1
                self.counts["batched_samples"] += k
            else:
                self.counts["live_messages"] += 1
        return out

    @staticmethod
    def batch(samples):
        buf = bytearray(16384)
        e = wire.BatchEncoder(buf, PERIOD_S)
        e.begin(samples[0])
        for s in samples:
            if not e.add(s):
                raise RuntimeError("batch buffer too small")
        return bytes(buf[:e.finish()])

    def messages(self):
        """(device, payload, n_samples) for the whole campaign, shift by shift in time order
        (the devices interleaved as their shifts come)."""
        for sp in sorted(self.shifts, key=lambda x: (x.t_on_s, x.device)):
            for payload, k in self.shift_messages(sp):
                yield sp.device, payload, k


# --------------------------------------------------------------------------- ground truth

MAIN_RATIO = 2.0        # a planted channel is "main" when it at least doubles the background
MAIN_NOISE_DB = 6.0     # ... or, for noise, adds at least 6 dB


def _nearest_road_m(spec, lat, lon):
    """Distance from (lat, lon) to the nearest route line, metres."""
    proj = spec.proj()
    px, py = proj.xy(lat, lon)
    best = float("inf")
    for pts in spec.routes.values():
        xy = [proj.xy(a, b) for a, b, _ in pts]
        for (x0, y0), (x1, y1) in zip(xy, xy[1:] + xy[:1]):
            dx, dy = x1 - x0, y1 - y0
            L2 = dx * dx + dy * dy
            f = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - x0) * dx + (py - y0) * dy) / L2))
            best = min(best, math.hypot(px - (x0 + f * dx), py - (y0 + f * dy)))
    return best


def planted_truth(spec, days, day0_s, seed=1):
    """The planted hotspots with what a report should find: for each, the distance of its
    centre from the nearest road, the share of the campaign's days it is present, the channels
    it raises seen from that road point (increase over the daytime background), and which of
    them are its main channels (ratio >= MAIN_RATIO, noise >= MAIN_NOISE_DB)."""
    bgf = spec.field(seed)
    bgf.hotspots = ()
    bgf.day_to_day_sd = 0.0
    times = [day0_s + h * 600 for h in range(7 * 6, 21 * 6)]    # 07:00-21:00 local
    lat0 = (spec.bounds[0] + spec.bounds[1]) / 2
    lon0 = (spec.bounds[2] + spec.bounds[3]) / 2
    bg = {}
    for t in times:
        for k, v in bgf.at(t, lat0, lon0).items():
            bg[k] = bg.get(k, 0.0) + v / len(times)
    out = []
    for h in spec.hotspots:
        d = _nearest_road_m(spec, h.lat, h.lon)
        w = math.exp(-d * d / (2 * h.sigma_m ** 2))
        present = sum(1 for day in range(days) if h.present(day))
        chans = {}
        main = []
        for k, add in h.add.items():
            if k not in bg or k == "odour_ou":      # odour is not a wire channel
                continue
            inc = add * w
            if k == "noise_dba":
                chans[k] = {"increase": round(inc, 3), "background": round(bg[k], 3)}
                if inc >= MAIN_NOISE_DB:
                    main.append(k)
            else:
                ratio = (bg[k] + inc) / bg[k] if bg[k] > 0 else float("inf")
                chans[k] = {"increase": round(inc, 3), "background": round(bg[k], 3),
                            "ratio": round(ratio, 3)}
                if ratio >= MAIN_RATIO:
                    main.append(k)
        out.append({"name": h.name, "lat": h.lat, "lon": h.lon, "sigma_m": h.sigma_m,
                    "hours": list(h.hours), "appear_day": h.appear_day,
                    "cleanup_day": h.cleanup_day, "road_distance_m": round(d, 1),
                    "days_present": present, "present_share": round(present / days, 3) if days else 0,
                    "channels": chans, "main_channels": main})
    return out
