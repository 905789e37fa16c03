"""Reading the samples out of the databases the gateway writes (docs/contracts.md, "InfluxDB
schema"): InfluxDB 1.x over InfluxQL (/query, CSV answers) and VictoriaMetrics (the store used
behind the 2.x write API; /api/v1/export).

The time range is read in day-long chunks, two at a time: the database works on the next chunk
while this process parses the last one, and no answer holds more than a day of the fleet.
Values whose status is not `ok` are dropped (out_of_range values are counted, not used).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

MEASUREMENT = "envbox"
# The channels the report analyses (wire names); counts, CF=1 masses, LAmin/LAmax are not read.
CHANNELS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "co2_ppm", "o3_ppb", "no2_ppb", "so2_ppb",
            "co_ppm", "hcho_ppb", "noise_dba", "temp_c", "rh_pct")
POSITION = ("lat_deg", "lon_deg", "speed_kmh")
CHUNK_S = 86400


class ReadError(RuntimeError):
    pass


def _frame(parts: list[pd.DataFrame], stats: dict) -> pd.DataFrame:
    """One frame of the chunks (emptied from the caller's list as they are joined)."""
    parts[:] = [p for p in parts if len(p)]
    if not parts:
        cols = {"device": pd.Series([], dtype="category"), "t": np.array([], dtype=np.int64)}
        cols.update({c: np.array([], dtype=np.float32) for c in POSITION + CHANNELS})
        return pd.DataFrame(cols)
    devices = sorted(set().union(*(set(p["device"].cat.categories) for p in parts)))
    dtype = pd.CategoricalDtype(devices)
    for part in parts:
        part["device"] = part["device"].astype(dtype)
    df = pd.concat(parts, ignore_index=True)
    parts.clear()
    # one device's samples in time order; a point written twice (VictoriaMetrics keeps
    # duplicates) counts once
    dev = df["device"].cat.codes.to_numpy()
    t = df["t"].to_numpy()
    order = np.lexsort((t, dev))
    dup = np.zeros(len(order), dtype=bool)
    dup[:-1] = (dev[order][1:] == dev[order][:-1]) & (t[order][1:] == t[order][:-1])
    keep = order[~dup]          # of equal (device, t) the last in the order: the later chunk
    stats["duplicates"] = stats.get("duplicates", 0) + int(dup.sum())
    df = df.take(keep).reset_index(drop=True)
    return df


def _clean(df: pd.DataFrame, stats: dict) -> pd.DataFrame:
    """Channel values only where the status says ok; no position: the sample is dropped."""
    if df.empty or "device" not in df:
        return pd.DataFrame()
    out = {"device": pd.Categorical(df["device"].astype(str)),
           "t": df["t"].to_numpy(np.int64)}
    for c in POSITION:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype(np.float32) if c in df \
            else np.full(len(df), np.nan, np.float32)
    for c in CHANNELS:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32) if c in df \
            else np.full(len(df), np.nan, np.float32)
        st = c + "_status"
        if st in df:
            s = pd.to_numeric(df[st], errors="coerce").to_numpy()
            flagged = s == 4
            stats["out_of_range"] = stats.get("out_of_range", 0) + int(flagged.sum())
            v = np.where(s == 0, v, np.float32(np.nan))
        out[c] = v
    res = pd.DataFrame(out)
    nofix = res["lat_deg"].isna() | res["lon_deg"].isna()
    stats["no_position"] = stats.get("no_position", 0) + int(nofix.sum())
    return res[~nofix]


def _chunks(start_s: int, end_s: int, chunk_s: int):
    t = start_s
    while t < end_s:
        yield t, min(end_s, t + chunk_s)
        t += chunk_s


def _fields() -> list[str]:
    return list(POSITION) + list(CHANNELS) + [c + "_status" for c in CHANNELS]


def influx1_query(start_s: int, end_s: int, devices=None) -> str:
    q = ("SELECT " + ",".join('"%s"' % f for f in _fields()) + f' FROM "{MEASUREMENT}" '
         f"WHERE time >= {int(start_s)}s AND time < {int(end_s)}s")
    if devices:
        q += " AND (" + " OR ".join("\"device\" = '%s'" % d.replace("'", "\\'")
                                    for d in devices) + ")"
    return q + " GROUP BY \"device\""


def influx1_fetch(url: str, db: str, start_s: int, end_s: int, devices=None,
                  username: str = "", password: str = "", timeout: float = 300) -> bytes:
    """The CSV answer for one chunk, as bytes."""
    params = {"q": influx1_query(start_s, end_s, devices), "db": db, "epoch": "s"}
    if username:
        params.update(u=username, p=password)
    req = urllib.request.Request(url.rstrip("/") + "/query",
                                 data=urllib.parse.urlencode(params).encode(),
                                 headers={"Accept": "application/csv"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise ReadError(f"InfluxDB {url}: HTTP {e.code}: {e.read()[:300]!r}") from None
    except OSError as e:
        raise ReadError(f"InfluxDB {url}: {e}") from None


def influx1_parse(body: bytes) -> pd.DataFrame:
    if not body.strip():
        return pd.DataFrame()
    if body.lstrip().startswith(b"{"):
        raise ReadError(f"InfluxDB answered: {body[:300]!r}")
    df = pd.read_csv(io.BytesIO(body), engine="c", low_memory=False)
    if "tags" not in df or "time" not in df:
        return pd.DataFrame()
    df["device"] = df.pop("tags").str.removeprefix("device=")
    df["t"] = df.pop("time")
    df.pop("name")
    return df


def read_influx1(url: str, db: str, start_s: int, end_s: int, devices=None, username: str = "",
                 password: str = "", chunk_s: int = CHUNK_S, workers: int = 2,
                 stats: dict | None = None, progress=None) -> pd.DataFrame:
    """Every sample of [start_s, end_s) as one DataFrame: device, t (Unix s), lat_deg, lon_deg,
    speed_kmh and the CHANNELS (float32, NaN where the status was not ok)."""
    stats = {} if stats is None else stats
    parts = []

    def job(ch):
        return _clean(influx1_parse(influx1_fetch(url, db, ch[0], ch[1], devices, username,
                                                  password)), stats)
    with ThreadPoolExecutor(workers) as ex:
        for part in ex.map(job, list(_chunks(start_s, end_s, chunk_s))):
            parts.append(part)
            if progress:
                progress(len(part))
    df = _frame(parts, stats)
    stats["samples"] = len(df)
    return df


def vm_fetch(url: str, start_s: int, end_s: int, devices=None, timeout: float = 300) -> bytes:
    names = "|".join(_fields())
    match = '{__name__=~"%s_(%s)"%s}' % (
        MEASUREMENT, names,
        (',device=~"%s"' % "|".join(devices)) if devices else "")
    params = {"match[]": match, "start": str(int(start_s)), "end": str(int(end_s) - 1)}
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v1/export?"
                                    + urllib.parse.urlencode(params), timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise ReadError(f"VictoriaMetrics {url}: HTTP {e.code}: {e.read()[:300]!r}") from None
    except OSError as e:
        raise ReadError(f"VictoriaMetrics {url}: {e}") from None


def vm_parse(body: bytes) -> pd.DataFrame:
    """JSON lines, one series (metric, device) per line -> one row per (device, time)."""
    per_dev: dict[str, dict[str, pd.Series]] = {}
    prefix = MEASUREMENT + "_"
    for line in body.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        m = obj["metric"]
        name = m.get("__name__", "")[len(prefix):]
        dev = m.get("device")
        if not dev or not name:
            continue
        ts = np.asarray(obj["timestamps"], dtype=np.int64) // 1000
        vals = np.asarray(obj["values"], dtype=np.float64)
        s = pd.Series(vals, index=ts)
        s = s[~s.index.duplicated(keep="last")]
        d = per_dev.setdefault(dev, {})
        d[name] = pd.concat([d[name], s]) if name in d else s
    frames = []
    for dev, cols in per_dev.items():
        f = pd.DataFrame(cols)
        f.index.name = "t"
        f = f.reset_index()
        f["device"] = dev
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_victoriametrics(url: str, start_s: int, end_s: int, devices=None,
                         chunk_s: int = CHUNK_S, workers: int = 2, stats: dict | None = None,
                         progress=None) -> pd.DataFrame:
    stats = {} if stats is None else stats
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/internal/force_flush", timeout=30) as r:
            r.read()
    except OSError:
        pass   # a read-only or remote instance: what is searchable is read

    def job(ch):
        return _clean(vm_parse(vm_fetch(url, ch[0], ch[1], devices)), stats)
    parts = []
    with ThreadPoolExecutor(workers) as ex:
        for part in ex.map(job, list(_chunks(start_s, end_s, chunk_s))):
            parts.append(part)
            if progress:
                progress(len(part))
    df = _frame(parts, stats)
    stats["samples"] = len(df)
    return df
