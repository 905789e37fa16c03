"""`envbox report`: the street map and hotspot report from the database (docs/report.md).

    envbox report --run DIR --out DIR                 a run of `envbox simulate` (starts its
                                                      database on the run's files)
    envbox report --influx URL [--db envbox] --from T --to T --out DIR
    envbox report --vm URL --from T --to T --out DIR  VictoriaMetrics (behind the 2.x sink)

Options: --roads FILE (GeoJSON street lines; default for --run: the world's roads; --tracks
derives segments from the vehicles' own tracks), --seg-len 50, --min-days 4,
--compare FROM..TO FROM..TO (local dates, both ends included, or ISO times), --noise-class 4a,
--noise-zones FILE (GeoJSON polygons with a "class" property), --basemap URL|none.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import threading

import numpy as np
import pandas as pd

from . import read
from .standards import NOISE_LIMITS_DBA

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
A = geo = render = None     # imported by _load_modules, while the first answers are read


def _load_modules(plots: bool = True) -> None:
    global A, geo, render
    from . import analysis, geo as g, render as r
    A, geo, render = analysis, g, r
    if plots:
        render._plt()


class ReportError(RuntimeError):
    pass


def parse_when(text: str, utc_offset_h: float, end: bool = False) -> int:
    """A local date (YYYY-MM-DD; as an end: the end of that day) or an ISO time (with a zone, or
    local) to Unix seconds."""
    text = text.strip()
    try:
        d = date.fromisoformat(text)
        t = datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()
        return int(t - utc_offset_h * 3600 + (86400 if end else 0))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{text!r} is neither YYYY-MM-DD nor an ISO time") from None
    if dt.tzinfo is None:
        return int(dt.replace(tzinfo=timezone.utc).timestamp() - utc_offset_h * 3600)
    return int(dt.timestamp())


def parse_window(text: str, utc_offset_h: float) -> tuple[int, int]:
    a, sep, b = text.partition("..")
    if not sep:
        raise ReportError(f"--compare window {text!r}: expected FROM..TO")
    t0, t1 = parse_when(a, utc_offset_h), parse_when(b, utc_offset_h, end=True)
    if t1 <= t0:
        raise ReportError(f"--compare window {text!r} is empty")
    return t0, t1


def zones_for(seg: geo.Segments, path: str | None, default: str) -> list[str]:
    if not path:
        return [default] * len(seg)
    import shapely
    from shapely.geometry import shape
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    polys = []
    for ft in doc.get("features", []):
        cls = str((ft.get("properties") or {}).get("class", default))
        if cls not in NOISE_LIMITS_DBA:
            raise ReportError(f"{path}: zone class {cls!r} is not one of "
                              f"{', '.join(NOISE_LIMITS_DBA)}")
        polys.append((shape(ft["geometry"]), cls))
    pts = shapely.points(seg.lon, seg.lat)
    out = []
    for p in pts:
        out.append(next((c for g, c in polys if g.contains(p)), default))
    return out


def build(df: pd.DataFrame, p, roads: str | None = None,
          compare: tuple | None = None, noise_zones: str | None = None):
    """The analysis of samples already read: (Segments, Result)."""
    if A is None:
        _load_modules(plots=False)
    if df.empty:
        raise ReportError("no samples with a position in the range")
    lat0 = float(np.nanmedian(df["lat_deg"]))
    lon0 = float(np.nanmedian(df["lon_deg"]))
    proj = geo.Projector(lat0, lon0)
    x, y = proj.xy(df["lon_deg"].to_numpy(), df["lat_deg"].to_numpy())
    if roads:
        seg = geo.segments_from_roads(geo.load_roads(roads), proj, p.seg_len_m)
        seg_of = geo.match_to_roads(seg, x, y, p.max_snap_m)
    else:
        seg, seg_of = geo.segments_from_tracks(x, y, proj, p.seg_len_m)
    passes = A.make_passes(df, seg_of, p)
    stats = A.segment_stats(passes, len(seg), p)
    bg = A.backgrounds(stats)
    nb = seg.neighbours()
    nb_peak = seg.neighbours(2.1 * p.seg_len_m)
    hs = A.find_hotspots(stats, bg, nb, seg.lat, seg.lon, p, nb_peak)
    cmp = None
    if compare:
        wa, wb = compare
        extra = []
        for t0, t1 in (wa, wb):
            ws = A.window_stats(passes, len(seg), p, t0, t1)
            if not ws.empty:
                extra.append(A.find_hotspots(ws, A.backgrounds(ws), nb, seg.lat, seg.lon, p,
                                             nb_peak))
        hs = A.merge_hotspots(hs, extra, p.place_radius_m)
        if not hs.empty:
            hs["rank"] = hs.groupby("channel")["excess_ratio"].rank(
                ascending=False, method="first").astype(int)
            hs["place"] = A._places(hs, p.place_radius_m)
    hs = A.annotate(hs, passes, p)
    if compare and not hs.empty:
        cmp = A.compare(passes, hs, nb, p, *compare)
    hourly, daily = A.aqi_tables(df, p)
    noise = A.noise_table(passes, len(seg), zones_for(seg, noise_zones, p.noise_class), p)
    info = {"matched": int((seg_of >= 0).sum()), "unmatched": int((seg_of < 0).sum()),
            "passes": int(len(passes.table))}
    return seg, A.Result(p, stats, bg, hs, cmp, hourly, daily, noise, passes, info)


def write(out: Path, seg, res, meta: dict, basemap: str | None,
          plots: bool = True) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("hotspot_place*.png"), *out.glob("map_*.png"), out / "compare.png",
                out / "compare.csv"]:
        old.unlink(missing_ok=True)      # a report over the last one: nothing stale stays
    files = render.write_tables(out, seg, res)
    files.append(render.write_geojson(out, seg, res))
    profiles = {}
    compare_png = None
    if plots:
        hs = res.hotspots
        if not hs.empty:
            for place, g in hs.groupby("place"):
                panels = [(r["channel"], A.hourly_profile(res.passes, r["segments"], r["channel"]))
                          for _, r in g.iterrows()]
                png = render.plot_profiles(panels, f"place {place}: by local hour")
                name = f"hotspot_place{place}.png"
                (out / name).write_bytes(png)
                files.append(name)
                profiles[int(place)] = png
        if res.compare is not None and not res.compare.empty:
            compare_png = render.plot_compare(res.compare, "before", "after")
            (out / "compare.png").write_bytes(compare_png)
            files.append("compare.png")
        wide = res.stats.pivot(index="seg", columns="channel", values="median") \
            .reindex(range(len(seg)))
        days = res.stats.groupby("seg")["days"].max().reindex(range(len(seg))).fillna(0)
        trust = (days >= res.params.min_days).to_numpy()
        for c in ("pm10_ugm3", "pm25_ugm3", "no2_ppb", "noise_dba"):
            if c in wide.columns:
                name = f"map_{c}.png"
                (out / name).write_bytes(render.plot_map(seg, wide[c].to_numpy(float), trust, c))
                files.append(name)
    meta = dict(meta, files=files + ["report.html"])
    files.append(render.write_html(out, seg, res, meta, profiles, compare_png, basemap))
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="envbox report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory of `envbox simulate`")
    src.add_argument("--influx", metavar="URL", help="InfluxDB 1.x, e.g. http://127.0.0.1:8086")
    src.add_argument("--vm", metavar="URL", help="VictoriaMetrics (the 2.x sink's store)")
    ap.add_argument("--db", default="envbox", help="InfluxDB database (default envbox)")
    ap.add_argument("--user", default="", help="InfluxDB user")
    ap.add_argument("--password", default="", help="InfluxDB password")
    ap.add_argument("--from", dest="t_from", help="start: local date YYYY-MM-DD or ISO time")
    ap.add_argument("--to", dest="t_to", help="end: local date (included) or ISO time")
    ap.add_argument("--devices", help="comma-separated device ids (default: all)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--roads", help="GeoJSON street lines (default with --run: its roads.geojson)")
    ap.add_argument("--tracks", action="store_true",
                    help="derive segments from the tracks even when a road file is there")
    ap.add_argument("--seg-len", type=float, default=50.0, help="segment length, m (default 50)")
    ap.add_argument("--max-snap", type=float, default=20.0,
                    help="farthest a fix may lie from its road segment, m (default 20)")
    ap.add_argument("--min-days", type=int, default=4,
                    help="drive days before a segment is trustworthy (default 4)")
    ap.add_argument("--utc-offset-h", type=float, default=None,
                    help="local time for drive days and hours (default: the run's, else 8)")
    ap.add_argument("--compare", nargs=2, metavar="FROM..TO",
                    help="before and after windows, e.g. 2026-11-03..2026-11-16 "
                         "2026-11-18..2026-12-01")
    ap.add_argument("--noise-class", default="4a", choices=sorted(NOISE_LIMITS_DBA),
                    help="GB 3096-2008 zone class of the roads (default 4a)")
    ap.add_argument("--noise-zones", help="GeoJSON polygons with a 'class' property")
    ap.add_argument("--basemap", default=OSM_TILES,
                    help="tile URL template for the HTML map ({z}/{x}/{y}), or none")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    a = ap.parse_args(argv)
    out = Path(a.out)
    t_start = time.monotonic()
    loader = threading.Thread(target=_load_modules, args=(not a.no_plots,), daemon=True)
    loader.start()
    server = None
    run = {}
    try:
        if a.run:
            rd = Path(a.run)
            try:
                run = json.loads((rd / "run.json").read_text())
            except (OSError, ValueError) as e:
                raise ReportError(f"{rd}: not a simulate run directory ({e})") from None
        off = a.utc_offset_h if a.utc_offset_h is not None else float(run.get("utc_offset_h", 8))
        t0 = parse_when(a.t_from, off) if a.t_from else run.get("start_s")
        t1 = parse_when(a.t_to, off, end=True) if a.t_to else run.get("end_s")
        if t1 is None:
            t1 = int(time.time())
        if t0 is None:
            t0 = t1 - 30 * 86400
        from .analysis import Params
        p = Params(seg_len_m=a.seg_len, max_snap_m=a.max_snap, min_days=a.min_days,
                   utc_offset_h=off, noise_class=a.noise_class)
        compare = tuple(parse_window(w, off) for w in a.compare) if a.compare else None
        roads = None if a.tracks else (a.roads or (str(Path(a.run) / "roads.geojson")
                                                   if a.run and (Path(a.run) / "roads.geojson").exists()
                                                   else None))
        devices = a.devices.split(",") if a.devices else None
        stats = {}
        from .. import servers
        if a.run:
            if run.get("sink") == "influx2":
                server = servers.VictoriaMetrics(run["db_dir"]).start()
                df = read.read_victoriametrics(server.url, t0, t1, devices, stats=stats)
            else:
                server = servers.InfluxDB1(run["db_dir"]).start()
                df = read.read_influx1(server.url, run.get("database", "envbox"), t0, t1,
                                       devices, stats=stats)
        elif a.influx:
            df = read.read_influx1(a.influx, a.db, t0, t1, devices, a.user, a.password,
                                   stats=stats)
        else:
            df = read.read_victoriametrics(a.vm, t0, t1, devices, stats=stats)
        t_read = time.monotonic()
        loader.join()
        seg, res = build(df, p, roads, compare, a.noise_zones)
        t_an = time.monotonic()

        def local(t):
            return datetime.fromtimestamp(t + off * 3600, timezone.utc).strftime("%Y-%m-%d %H:%M")
        meta = {"title": run.get("world", a.influx or a.vm or ""),
                "range": f"{local(t0)} – {local(t1)} (UTC{off:+g})",
                "samples": len(df), "devices": int(df["device"].nunique()),
                "made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "compare": " vs ".join(a.compare) if a.compare else ""}
        files = write(out, seg, res, meta, None if a.basemap == "none" else a.basemap,
                      plots=not a.no_plots)
        summary = {"samples": len(df), "segments": len(seg), "segment_source": seg.source,
                   "hotspots": int(len(res.hotspots)), "read_s": round(t_read - t_start, 2),
                   "analysis_s": round(t_an - t_read, 2),
                   "write_s": round(time.monotonic() - t_an, 2), "read": stats, **res.info,
                   "background": {k: round(v, 3) for k, v in res.background.items()}}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    except (ReportError, read.ReadError, ValueError, OSError) as e:
        print(f"report failed: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    hs = res.hotspots
    print(f"report: {len(df):,} samples, {len(seg)} segments ({seg.source}), "
          f"{len(hs)} hotspot rows in {int(hs['place'].nunique()) if len(hs) else 0} places; "
          f"read {summary['read_s']} s, analysis {summary['analysis_s']} s, "
          f"write {summary['write_s']} s")
    for _, r in hs.iterrows():
        print(f"  #{r['rank']:<2} {A.LABEL[r['channel']]:<10} place {r['place']:<2} "
              f"{r['lat']:.5f},{r['lon']:.5f}  {r['median']:.1f} vs {r['background']:.1f} "
              f"({r['excess_ratio']:.2f}x) {r['days']} days  {r['hours']}")
    print(f"open {out / 'report.html'}")
    return 0
