"""From matched samples to segment statistics, hotspots, before/after and the standards' tables.

The method (docs/report.md says why):
1. A pass is a run of one vehicle's consecutive samples on one segment (a gap of more than
   `pass_gap_s` starts a new one). Its value is the mean of its samples (noise: the energy mean),
   so a vehicle waiting at a red light counts once, not once per 10 s.
2. A segment's value on a drive day (local date) is the mean of that day's passes; its value
   over the range is the median of those day values (the day-to-day spread of the weather and of
   the sources is what the median is robust against). Uncertainty: the distribution-free 90 %
   confidence interval of that median (order statistics of the day values; needs >= 5 days).
3. Spread between passes: the robust standard deviation (1.4826 x MAD) of the pass values. From
   it, the passes that a +-25 % (noise: +-1 dB) 90 % interval of the median would need.
4. A segment is trustworthy for a channel from `min_days` drive days on (default 4).
5. Background of the district: per channel, the median of the trustworthy segments' values.
   Hotspot: a trustworthy segment whose value is at least `hot_ratio` x the background (noise:
   `hot_noise_db` above it) and whose lower interval bound (with fewer than 5 days: its lowest
   day) still lies above the background; touching hotspot segments of one channel form one
   hotspot, placed at its highest segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .read import CHANNELS
from . import standards as S

# Channels a hotspot can be found in (temperature, humidity and O3 are context: O3 is regional
# and falls where traffic NO titrates it).
HOT_CHANNELS = ("pm10_ugm3", "pm25_ugm3", "pm1_ugm3", "no2_ppb", "co_ppm", "so2_ppb",
                "hcho_ppb", "co2_ppm", "noise_dba")
# The smallest step the fitted modules report: a background below it is taken as this (a ratio
# to a background of 0 would mean nothing). ZE03: 0.01 ppm for O3/NO2/SO2 (10 ppb), 0.1 ppm CO.
RESOLUTION = {"pm1_ugm3": 1.0, "pm25_ugm3": 1.0, "pm10_ugm3": 1.0, "co2_ppm": 1.0,
              "o3_ppb": 10.0, "no2_ppb": 10.0, "so2_ppb": 10.0, "co_ppm": 0.1, "hcho_ppb": 1.0,
              "noise_dba": 0.1, "temp_c": 0.01, "rh_pct": 0.01}
LABEL = {"pm1_ugm3": "PM1", "pm25_ugm3": "PM2.5", "pm10_ugm3": "PM10", "co2_ppm": "CO2",
         "o3_ppb": "O3", "no2_ppb": "NO2", "so2_ppb": "SO2", "co_ppm": "CO", "hcho_ppb": "HCHO",
         "noise_dba": "Noise LAeq", "temp_c": "Temperature", "rh_pct": "Humidity"}
UNIT = {"pm1_ugm3": "µg/m³", "pm25_ugm3": "µg/m³", "pm10_ugm3": "µg/m³", "co2_ppm": "ppm",
        "o3_ppb": "ppb", "no2_ppb": "ppb", "so2_ppb": "ppb", "co_ppm": "ppm", "hcho_ppb": "ppb",
        "noise_dba": "dB(A)", "temp_c": "°C", "rh_pct": "%"}
NOISE = "noise_dba"
Z90 = 1.6449
MEDIAN_EFF = 1.2533      # sd of a median = 1.2533 sd / sqrt(n) (normal data)


@dataclass
class Params:
    seg_len_m: float = 50.0
    max_snap_m: float = 20.0
    min_days: int = 4
    pass_gap_s: int = 60
    utc_offset_h: float = 8.0
    hot_ratio: float = 1.5
    hot_noise_db: float = 3.0
    target_rel: float = 0.25
    target_noise_db: float = 1.0
    ci_level: float = 0.90
    noise_class: str = "4a"
    min_hour_samples: int = 60       # a fleet-pooled hour counts for the AQI from 10 min of data
    place_radius_m: float = 150.0


@dataclass
class Passes:
    """One row per pass: seg, dev, day (local day number), hour (local, at its start), t, n
    (samples), and per channel its mean (noise: energy mean, in dB)."""
    table: pd.DataFrame


def _energy(v):
    return np.power(10.0, v / 10.0)


def _db(e):
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(e)


def make_passes(df: pd.DataFrame, seg_of: np.ndarray, p: Params) -> Passes:
    """df sorted by device then time (read.py does), seg_of: segment of each row (-1 = none)."""
    keep = seg_of >= 0
    seg = seg_of[keep].astype(np.int32)
    t = df["t"].to_numpy()[keep]
    dev = df["device"].astype("category").cat.codes.to_numpy()[keep]
    n = len(seg)
    if n == 0:
        cols = ["seg", "dev", "day", "hour", "t", "n"] + list(CHANNELS)
        return Passes(pd.DataFrame({c: [] for c in cols}))
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (seg[1:] != seg[:-1]) | (dev[1:] != dev[:-1]) | (np.diff(t) > p.pass_gap_s)
    starts = np.flatnonzero(new)
    local = t + int(round(p.utc_offset_h * 3600))
    out = {"seg": seg[starts], "dev": dev[starts], "day": (local[starts] // 86400),
           "hour": ((local[starts] % 86400) / 3600.0).astype(np.float32), "t": t[starts],
           "n": np.diff(np.append(starts, n))}
    for c in CHANNELS:
        v = df[c].to_numpy()[keep].astype(np.float64)
        if c == NOISE:
            v = _energy(v)
        ok = ~np.isnan(v)
        sums = np.add.reduceat(np.where(ok, v, 0.0), starts)
        cnt = np.add.reduceat(ok.astype(np.int32), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = sums / cnt
        m[cnt == 0] = np.nan
        out[c] = (_db(m) if c == NOISE else m).astype(np.float32)
    return Passes(pd.DataFrame(out))


_RANK_CACHE: dict[tuple[int, float], int] = {}


def lower_rank(n: int, level: float) -> int:
    """1-based rank k of the order statistic that bounds a distribution-free `level` interval
    of the median of n values from below: the smallest k with P(Bin(n, 1/2) <= k) >= (1 -
    level) / 2 (the interval [x_k, x_(n+1-k)] then covers at least `level`; 0 = n too small)."""
    key = (int(n), level)
    k = _RANK_CACHE.get(key)
    if k is None:
        q = (1 - level) / 2
        total, cdf, k = 2 ** n, 0, 0
        for i in range(n + 1):
            cdf += math.comb(n, i)
            if cdf / total >= q:
                k = i
                break
        _RANK_CACHE[key] = k
    return k


def _ci_bounds(seg_ids: np.ndarray, vals: np.ndarray, level: float):
    """Per group (seg_ids sorted ascending with vals sorted within): the order-statistic
    confidence interval of the median. Returns (groups, lo, hi, n)."""
    groups, starts, counts = np.unique(seg_ids, return_index=True, return_counts=True)
    k = np.array([lower_rank(int(c), level) for c in counts], dtype=np.int64)
    lo = np.full(len(groups), np.nan)
    hi = np.full(len(groups), np.nan)
    ok = k >= 1
    lo[ok] = vals[starts[ok] + k[ok] - 1]
    hi[ok] = vals[starts[ok] + counts[ok] - k[ok]]
    return groups, lo, hi, counts


def segment_stats(passes: Passes, n_segs: int, p: Params) -> pd.DataFrame:
    """Long table, one row per (segment, channel) with data: passes, days, median, ci90_lo,
    ci90_hi, pass_sd, passes_for_target, more_passes, trustworthy."""
    pt = passes.table
    cols = ["seg", "channel", "passes", "days", "median", "ci90_lo", "ci90_hi", "pass_sd",
            "day_min", "passes_for_target", "more_passes", "trustworthy"]
    if pt.empty:
        return pd.DataFrame(columns=cols)
    seg = pt["seg"].to_numpy().astype(np.int64)
    day = pt["day"].to_numpy().astype(np.int64)
    sd_key = seg * 100_000 + (day - day.min())
    codes, uniq = pd.factorize(sd_key, sort=True)
    sd_seg = uniq // 100_000
    grouper = pt.groupby(seg)
    rows = []
    for c in CHANNELS:
        v = pt[c].to_numpy(dtype=np.float64)
        ok = ~np.isnan(v)
        if not ok.any():
            continue
        # spread between passes: robust sd = 1.4826 x MAD per segment
        col = pt[c]
        mad_c = (col - grouper[c].transform("median")).abs().groupby(seg).median()
        npass_c = grouper[c].count()
        w = _energy(v[ok]) if c == NOISE else v[ok]
        sums = np.bincount(codes[ok], weights=w, minlength=len(uniq))
        cnt = np.bincount(codes[ok], minlength=len(uniq))
        have = cnt > 0
        dm = sums[have] / cnt[have]
        if c == NOISE:
            dm = _db(dm)
        dseg = sd_seg[have]
        order = np.lexsort((dm, dseg))            # by segment, then value
        dseg, dm = dseg[order], dm[order]
        grp, lo, hi, ndays = _ci_bounds(dseg, dm, p.ci_level)
        starts = np.searchsorted(dseg, grp)
        mid_lo = starts + (ndays - 1) // 2
        mid_hi = starts + ndays // 2
        med = (dm[mid_lo] + dm[mid_hi]) / 2.0
        st = pd.DataFrame({"seg": grp, "channel": c, "passes": npass_c.reindex(grp).to_numpy(),
                           "days": ndays, "median": med, "ci90_lo": lo, "ci90_hi": hi,
                           "pass_sd": 1.4826 * mad_c.reindex(grp).to_numpy(),
                           "day_min": dm[starts]})
        if c == NOISE:
            req = np.ceil((Z90 * MEDIAN_EFF * st["pass_sd"] / p.target_noise_db) ** 2)
        elif c in ("temp_c", "rh_pct"):
            req = pd.Series(np.nan, index=st.index)
        else:
            denom = p.target_rel * st["median"].abs().clip(lower=RESOLUTION[c])
            req = np.ceil((Z90 * MEDIAN_EFF * st["pass_sd"] / denom) ** 2)
        st["passes_for_target"] = np.maximum(req, 1)
        st["more_passes"] = np.maximum(0, st["passes_for_target"] - st["passes"])
        st["trustworthy"] = st["days"] >= p.min_days
        rows.append(st)
    return pd.concat(rows, ignore_index=True)[cols]


def backgrounds(stats: pd.DataFrame) -> dict[str, float]:
    bg = {}
    for c, g in stats[stats["trustworthy"]].groupby("channel"):
        bg[c] = float(g["median"].median())
    return bg


def _effective_bg(c, bg):
    return bg if c == NOISE else max(bg, RESOLUTION[c])


def excess_ratio(c, value, bg):
    if c == NOISE:
        return 10.0 ** ((value - bg) / 10.0)     # ratio of sound energy
    return value / _effective_bg(c, bg)


def _components(members: list[int], nb: list[set]) -> list[list[int]]:
    left = set(members)
    comps = []
    while left:
        s = left.pop()
        comp, stack = [s], [s]
        while stack:
            u = stack.pop()
            for v in nb[u]:
                if v in left:
                    left.remove(v)
                    comp.append(v)
                    stack.append(v)
        comps.append(comp)
    return comps


def find_hotspots(stats: pd.DataFrame, bg: dict, nb: list[set], seg_lat, seg_lon,
                  p: Params, nb_peak: list[set] | None = None) -> pd.DataFrame:
    """One row per (hotspot, channel), ranked per channel by excess ratio (1 = worst).

    The candidate segments of a channel are grouped into touching runs (nb); inside a run every
    local maximum (the highest candidate within nb_peak, about two segment lengths) is a
    hotspot of its own, so two junctions a few hundred metres apart stay two hotspots. Each
    candidate of the run belongs to its nearest peak."""
    nb_peak = nb if nb_peak is None else nb_peak
    rows = []
    st = stats.set_index(["channel", "seg"])
    for c in HOT_CHANNELS:
        if c not in bg or c not in st.index.get_level_values(0):
            continue
        s = st.loc[c]
        b = bg[c]
        beff = _effective_bg(c, b)
        lower = s["ci90_lo"].where(s["ci90_lo"].notna(), s["day_min"])
        if c == NOISE:
            cand = s["trustworthy"] & (s["median"] >= b + p.hot_noise_db) & (lower > b)
        else:
            cand = s["trustworthy"] & (s["median"] >= p.hot_ratio * beff) & (lower > beff)
        members = [int(i) for i in s.index[cand.to_numpy()]]
        med = {i: float(s.at[i, "median"]) for i in members}
        for comp in _components(members, nb):
            cs = set(comp)
            peaks = [i for i in comp
                     if all(med[i] > med[j] or (med[i] == med[j] and i < j)
                            for j in nb_peak[i] if j in cs)]
            owner = {i: min(peaks, key=lambda k: _dist_m(seg_lat[i], seg_lon[i], seg_lat[k],
                                                          seg_lon[k])) for i in comp}
            for peak in peaks:
                r = s.loc[peak]
                mine = sorted(i for i in comp if owner[i] == peak)
                rows.append({"channel": c, "seg": peak, "lat": float(seg_lat[peak]),
                             "lon": float(seg_lon[peak]), "median": float(r["median"]),
                             "background": b, "excess_ratio": excess_ratio(c, r["median"], b),
                             "excess": float(r["median"] - b), "passes": int(r["passes"]),
                             "days": int(r["days"]), "ci90_lo": float(r["ci90_lo"]),
                             "ci90_hi": float(r["ci90_hi"]), "pass_sd": float(r["pass_sd"]),
                             "segments": mine, "n_segments": len(mine)})
    hs = pd.DataFrame(rows)
    if hs.empty:
        return pd.DataFrame(columns=["rank", "lat", "lon", "channel", "median", "background",
                                     "excess_ratio", "passes", "days"])
    hs["rank"] = hs.groupby("channel")["excess_ratio"].rank(ascending=False, method="first") \
        .astype(int)
    order = {c: i for i, c in enumerate(HOT_CHANNELS)}
    hs = hs.sort_values(["channel", "rank"], key=lambda col: col.map(order) if col.name ==
                        "channel" else col).reset_index(drop=True)
    hs["place"] = _places(hs, p.place_radius_m)
    return hs


def _places(hs: pd.DataFrame, radius_m: float) -> list[int]:
    """Group hotspots of different channels that lie within radius_m: one place, one crew."""
    order = hs.sort_values("excess_ratio", ascending=False).index
    centres, place = [], {}
    for i in order:
        la, lo = hs.at[i, "lat"], hs.at[i, "lon"]
        for k, (cla, clo) in enumerate(centres):
            if _dist_m(la, lo, cla, clo) <= radius_m:
                place[i] = k + 1
                break
        else:
            centres.append((la, lo))
            place[i] = len(centres)
    return [place[i] for i in hs.index]


def _dist_m(lat1, lon1, lat2, lon2):
    dy = (lat1 - lat2) * 110_574.0
    dx = (lon1 - lon2) * 111_320.0 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


def hourly_profile(passes: Passes, segs: list[int], c: str) -> pd.DataFrame:
    """Per local hour: the median pass value on `segs` and over the whole district."""
    key = (tuple(segs), c)
    done = passes.__dict__.setdefault("_profiles", {})
    if key in done:
        return done[key]
    pt = passes.table
    cache = passes.__dict__.setdefault("_district_hourly", {})
    if "hour_int" not in passes.__dict__:
        passes.__dict__["hour_int"] = pt["hour"].astype(int)
    h = passes.__dict__["hour_int"]
    dist = cache.get(c)
    if dist is None:
        dist = cache[c] = pt[c].groupby(h).median()
    on = pt["seg"].isin(segs).to_numpy()
    sub = pd.DataFrame({"hour": h[on], "v": pt[c][on]}).dropna()
    here = sub.groupby("hour")["v"].agg(["median", "size"])
    out = pd.DataFrame({"district": dist}).join(here, how="left")
    done[key] = out.rename(columns={"median": "here", "size": "passes"}).reindex(range(24))
    return done[key]


def elevated_hours(prof: pd.DataFrame, c: str, p: Params, min_passes: int = 3) -> list[int]:
    ok = prof["passes"].fillna(0) >= min_passes
    if c == NOISE:
        hi = prof["here"] - prof["district"] >= p.hot_noise_db
    else:
        hi = prof["here"] >= p.hot_ratio * prof["district"].clip(lower=RESOLUTION[c])
    return [int(h) for h in prof.index[(ok & hi).to_numpy()]]


def hour_ranges(hours: list[int]) -> str:
    """[7, 8, 9, 17, 18] -> '07-10, 17-19' (end exclusive)."""
    if not hours:
        return ""
    hours = sorted(hours)
    out, a, prev = [], hours[0], hours[0]
    for h in hours[1:] + [None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        out.append("%02d-%02d" % (a, prev + 1))
        if h is not None:
            a = prev = h
    return ", ".join(out)


def reason(c: str, hot: dict, others: dict[str, float], hours: str) -> str:
    """One line a crew can act on, from the channel, its company and the hours."""
    when = f" ({hours})" if hours.startswith("all") else (f" ({hours} h)" if hours else "")
    x = hot["excess_ratio"]
    if c in ("pm10_ugm3", "pm25_ugm3", "pm1_ugm3"):
        coarse = "pm10_ugm3" in others and ("pm25_ugm3" not in others
                                            or others["pm10_ugm3"] >= others["pm25_ugm3"])
        if coarse and not ("no2_ppb" in others or "co_ppm" in others):
            return (f"Coarse dust, {LABEL[c]} {x:.1f}x background{when}: bare earth, earthworks or "
                    f"loose loads; check covering, wetting and wheel washing.")
        if "no2_ppb" in others or "co_ppm" in others:
            return (f"Traffic particles, {LABEL[c]} {x:.1f}x background{when}: queueing or idling "
                    f"vehicles; check signal timing and idling.")
        return (f"Fine particles, {LABEL[c]} {x:.1f}x background{when}: combustion or smoke; "
                f"look for burning, barbecues, diesel generators.")
    if c in ("no2_ppb", "co_ppm"):
        return (f"Traffic exhaust, {LABEL[c]} {x:.1f}x background{when}: queueing at a junction or "
                f"idling vehicles; check signal timing, idling, heavy vehicles.")
    if c == "hcho_ppb":
        return (f"Formaldehyde {x:.1f}x background{when}: waste, solvents or fresh paint and "
                f"panels; check waste storage and collection.")
    if c == "so2_ppb":
        return (f"SO2 {x:.1f}x background{when}: coal or heavy-oil burning; look for boilers and "
                f"stoves.")
    if c == "co2_ppm":
        return f"CO2 {x:.1f}x background{when}: combustion or dense traffic nearby."
    if c == NOISE:
        return (f"Noise +{hot['excess']:.1f} dB over the district{when}: traffic or works; check "
                f"works hours and the zone's limits.")
    return f"{LABEL.get(c, c)} {x:.1f}x background{when}."


def annotate(hs: pd.DataFrame, passes: Passes, p: Params) -> pd.DataFrame:
    """Adds the elevated hours and the crew's reason to each hotspot row."""
    if hs.empty:
        return hs
    hs = hs.copy()
    hours, reasons = [], []
    for i, r in hs.iterrows():
        prof = hourly_profile(passes, r["segments"], r["channel"])
        el = elevated_hours(prof, r["channel"], p)
        driven = [int(h) for h in prof.index[(prof["passes"].fillna(0) >= 3).to_numpy()]]
        hrs = "all hours driven" if el and el == driven else hour_ranges(el)
        same = hs[hs["place"] == r["place"]]
        others = dict(zip(same["channel"], same["excess_ratio"]))
        hours.append(hrs)
        reasons.append(reason(r["channel"], r, others, hrs))
    hs["hours"] = hours
    hs["reason"] = reasons
    return hs


# ----------------------------------------------------------------------- before and after

def window_stats(passes: Passes, n_segs: int, p: Params, t0: int, t1: int) -> pd.DataFrame:
    pt = passes.table
    sub = Passes(pt[(pt["t"] >= t0) & (pt["t"] < t1)])
    return segment_stats(sub, n_segs, p)


def compare(passes: Passes, hs: pd.DataFrame, nb: list[set], p: Params,
            wa: tuple[int, int], wb: tuple[int, int]) -> pd.DataFrame:
    """Per hotspot and channel: the median over the hotspot's peak segment and its neighbours in
    the hotspot, in window A and in window B; the change, and whether it is larger than the
    spread between passes (the larger of the two windows' robust pass sd)."""
    pt = passes.table
    rows = []
    for _, r in hs.iterrows():
        c = r["channel"]
        segs = [r["seg"]] + [s for s in nb[r["seg"]] if s in set(r["segments"])]
        res = {}
        for tag, (t0, t1) in (("a", wa), ("b", wb)):
            sub = pt[(pt["t"] >= t0) & (pt["t"] < t1) & pt["seg"].isin(segs)][["day", c]].dropna()
            if c == NOISE:
                dm = sub.assign(e=_energy(sub[c])).groupby("day")["e"].mean()
                dm = pd.Series(_db(dm.to_numpy()), index=dm.index)
            else:
                dm = sub.groupby("day")[c].mean()
            v = sub[c]
            res[tag] = {"median": float(dm.median()) if len(dm) else float("nan"),
                        "days": int(len(dm)), "passes": int(len(v)),
                        "sd": float(1.4826 * (v - v.median()).abs().median()) if len(v) else float("nan")}
        a, b = res["a"], res["b"]
        change = b["median"] - a["median"]
        spread = np.nanmax([a["sd"], b["sd"]]) if not (math.isnan(a["sd"]) and math.isnan(b["sd"])) else float("nan")
        rows.append({"rank": int(r["rank"]), "place": int(r["place"]), "channel": c,
                     "lat": r["lat"], "lon": r["lon"], "median_a": a["median"],
                     "median_b": b["median"], "change": change,
                     "change_pct": 100.0 * change / a["median"] if a["median"] else float("nan"),
                     "spread": spread,
                     "larger_than_spread": bool(abs(change) > spread) if not math.isnan(change)
                     and not math.isnan(spread) else False,
                     "passes_a": a["passes"], "passes_b": b["passes"], "days_a": a["days"],
                     "days_b": b["days"]})
    return pd.DataFrame(rows)


def merge_hotspots(main: pd.DataFrame, extra: list[pd.DataFrame], radius_m: float) -> pd.DataFrame:
    """main plus the hotspots of `extra` (e.g. found only in one compare window) that are not
    within radius_m of a main hotspot of the same channel."""
    rows = [main] if not main.empty else []
    have = [(r["channel"], r["lat"], r["lon"]) for _, r in main.iterrows()]
    for df in extra:
        for _, r in df.iterrows():
            if any(c == r["channel"] and _dist_m(la, lo, r["lat"], r["lon"]) <= radius_m
                   for c, la, lo in have):
                continue
            have.append((r["channel"], r["lat"], r["lon"]))
            rows.append(pd.DataFrame([r]))
    return pd.concat(rows, ignore_index=True) if rows else main


# ----------------------------------------------------------------------- standards

_AQI_POLL = {"pm25": "pm25_ugm3", "pm10": "pm10_ugm3", "so2": "so2_ppb", "no2": "no2_ppb",
             "co": "co_ppm", "o3": "o3_ppb"}


def aqi_tables(df: pd.DataFrame, p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HJ 633-2026 on the windows it defines, from fleet-pooled means over the district:
    hourly (a clock hour with at least min_hour_samples samples; PM on the 24 h columns as the
    real-time rule does, SO2/NO2/CO/O3 on the 1 h columns) and daily (24 h means of the valid
    hours; O3 as the largest sliding 8 h mean with >= 6 valid hours). Indicative: a moving
    fleet's pooled mean is not a station's."""
    off = int(round(p.utc_offset_h * 3600))
    hour_no = (df["t"].to_numpy() + off) // 3600
    cols = list(_AQI_POLL.values())
    g = pd.DataFrame({"h": hour_no, **{c: df[c].to_numpy() for c in cols}}).groupby("h")
    hm = g.mean()
    hm["samples"] = g.size()
    hm = hm[hm["samples"] >= p.min_hour_samples]
    hourly = []
    for h, r in hm.iterrows():
        conc = {k: S.to_standard_units(k, r[c]) for k, c in _AQI_POLL.items()}
        iq = {"pm25": S.iaqi("pm25_24h", conc["pm25"]), "pm10": S.iaqi("pm10_24h", conc["pm10"]),
              "so2": S.iaqi("so2_1h", conc["so2"]), "no2": S.iaqi("no2_1h", conc["no2"]),
              "co": S.iaqi("co_1h", conc["co"]), "o3": S.iaqi("o3_1h", conc["o3"])}
        if iq["so2"] is None and not math.isnan(conc["so2"]):
            iq["so2"] = S.iaqi("so2_24h", conc["so2"])
        a, prim = S.aqi_of(iq)
        lvl, cat, _ = S.category(a)
        local = pd.Timestamp(int(h) * 3600, unit="s")
        hourly.append({"hour_local": local.strftime("%Y-%m-%d %H:00"), "samples": int(r["samples"]),
                       **{f"{k}_conc": round(v, 1) for k, v in conc.items()},
                       **{f"{k}_iaqi": v for k, v in iq.items()}, "aqi": a,
                       "primary": "+".join(prim), "level": lvl, "category": cat,
                       "indicative": True})
    hourly = pd.DataFrame(hourly)
    daily = []
    if not hm.empty:
        hm = hm.copy()
        hm["day"] = hm.index // 24
        for d, grp in hm.groupby("day"):
            conc = {k: S.to_standard_units(k, grp[c].mean()) for k, c in _AQI_POLL.items()}
            # O3: 8 h sliding means over this day's clock hours with >= 6 valid hours each
            o3 = grp["o3_ppb"]
            best = float("nan")
            for start in range(int(d) * 24 - 7, int(d) * 24 + 17):
                w = o3[(o3.index >= start) & (o3.index < start + 8)]
                if len(w) >= 6:
                    best = w.mean() if math.isnan(best) else max(best, w.mean())
            o3_8h = S.to_standard_units("o3", best) if not math.isnan(best) else float("nan")
            iq = {"pm25": S.iaqi("pm25_24h", conc["pm25"]), "pm10": S.iaqi("pm10_24h", conc["pm10"]),
                  "so2": S.iaqi("so2_24h", conc["so2"]), "no2": S.iaqi("no2_24h", conc["no2"]),
                  "co": S.iaqi("co_24h", conc["co"]), "o3": S.iaqi("o3_8h", o3_8h)}
            a, prim = S.aqi_of(iq)
            lvl, cat, _ = S.category(a)
            daily.append({"date_local": pd.Timestamp(int(d) * 86400, unit="s").strftime("%Y-%m-%d"),
                          "hours_covered": int(len(grp)),
                          **{f"{k}_conc": round(v, 1) for k, v in conc.items()},
                          "o3_8h_conc": round(o3_8h, 1) if not math.isnan(o3_8h) else None,
                          **{f"{k}_iaqi": v for k, v in iq.items()}, "aqi": a,
                          "primary": "+".join(prim), "level": lvl, "category": cat,
                          "complete": len(grp) >= 20, "indicative": True})
    return hourly, pd.DataFrame(daily)


def noise_table(passes: Passes, n_segs: int, zone_of_seg: list[str], p: Params) -> pd.DataFrame:
    """LAeq per segment for day (06-22) and night (22-06): the energy mean of the passes in each
    period, against the GB 3096-2008 limits of the segment's zone class. Indicative: the
    standard measures at fixed points; the box moves."""
    pt = passes.table[["seg", "hour", NOISE]].dropna()
    day = (pt["hour"] >= S.DAY_HOURS[0]) & (pt["hour"] < S.DAY_HOURS[1])
    e = _energy(pt[NOISE])
    rows = []
    for tag, m in (("day", day), ("night", ~day)):
        g = e[m].groupby(pt["seg"][m])
        rows.append(pd.DataFrame({f"laeq_{tag}_dba": _db(g.mean()), f"passes_{tag}": g.size()}))
    out = pd.concat(rows, axis=1).reindex(range(n_segs))
    out["noise_class"] = zone_of_seg
    lim = [S.NOISE_LIMITS_DBA.get(z, (np.nan, np.nan)) for z in zone_of_seg]
    out["limit_day_dba"] = [a for a, _ in lim]
    out["limit_night_dba"] = [b for _, b in lim]
    out["over_day_db"] = out["laeq_day_dba"] - out["limit_day_dba"]
    out["over_night_db"] = out["laeq_night_dba"] - out["limit_night_dba"]
    out.index.name = "seg"
    return out.reset_index()


@dataclass
class Result:
    params: Params
    stats: pd.DataFrame
    background: dict
    hotspots: pd.DataFrame
    compare: pd.DataFrame | None
    aqi_hourly: pd.DataFrame
    aqi_daily: pd.DataFrame
    noise: pd.DataFrame
    passes: Passes
    info: dict = field(default_factory=dict)
