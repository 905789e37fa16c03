"""Writing the report: CSV tables, segments.geojson, PNG plots and one self-contained HTML page
(the map is inline SVG drawn from the segments, so it works offline; map tiles are laid under
it only when a basemap URL is given and the browser can reach it)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import standards as S
from .analysis import CHANNELS, HOT_CHANNELS, LABEL, NOISE, UNIT, Result
from .geo import Segments, geojson_features

MAP_CHANNELS = ("pm10_ugm3", "pm25_ugm3", "no2_ppb", "co_ppm", "hcho_ppb", "noise_dba",
                "pm1_ugm3", "so2_ppb", "co2_ppm", "o3_ppb", "temp_c", "rh_pct")
NO_DATA = "#c8c8c8"
SEQ = ("#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026")
NOISE_BINS = (55, 60, 65, 70, 75)
NOISE_COLS = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027", "#7f0000")
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


# ----------------------------------------------------------------------------- colour scales

def scale_for(c: str, values: np.ndarray) -> tuple[list[float], list[str], str]:
    """(upper bounds, colours, title) for a channel's segment values: HJ 633-2026 bands for PM
    (their colours; a long-term street value is not an AQI), the GB 3096 steps for noise,
    quintiles of the segments otherwise."""
    if c in ("pm25_ugm3", "pm10_ugm3"):
        bp = S.BREAKPOINTS["pm25_24h" if c == "pm25_ugm3" else "pm10_24h"][1:]
        cols = [x[3] for x in S.CATEGORIES][:len(bp)]
        return list(bp), cols, "HJ 633—2026 concentration bands (AQI colours; not an AQI)"
    if c == NOISE:
        return list(NOISE_BINS) + [math.inf], list(NOISE_COLS), "LAeq dB(A), 5 dB steps"
    v = values[~np.isnan(values)]
    if v.size == 0:
        return [math.inf], [SEQ[0]], "no data"
    qs = np.unique(np.round(np.quantile(v, [0.2, 0.4, 0.6, 0.8]), 3))
    ups = list(qs) + [math.inf]
    return ups, list(SEQ[-len(ups):]) if len(ups) < len(SEQ) else list(SEQ), "quintiles of the segments"


def colour(v: float, ups, cols) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NO_DATA
    for u, col in zip(ups, cols):
        if v <= u:
            return col
    return cols[-1]


def _fmt(v, nd=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{nd}f}"


# ----------------------------------------------------------------------------- tables

def segment_frame(seg: Segments, res: Result) -> pd.DataFrame:
    st = res.stats.copy()
    st["lat"] = seg.lat[st["seg"]]
    st["lon"] = seg.lon[st["seg"]]
    st["road"] = [seg.road[i] for i in st["seg"]]
    cols = ["seg", "road", "lat", "lon", "channel", "passes", "days", "median", "ci90_lo",
            "ci90_hi", "pass_sd", "passes_for_target", "more_passes", "trustworthy"]
    return st[cols].sort_values(["seg", "channel"])


def _csv(df: pd.DataFrame, path: Path) -> None:
    """CSV with positions to 6 decimals (~0.1 m) and other floats to 4."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = df[c].round(6 if c in ("lat", "lon") else 4)
    df.to_csv(path, index=False)


def write_tables(out: Path, seg: Segments, res: Result) -> list[str]:
    files = []
    sf = segment_frame(seg, res)
    sf.pipe(_csv, out / "segments.csv")
    files.append("segments.csv")
    hs = res.hotspots
    cols = ["rank", "lat", "lon", "channel", "median", "background", "excess_ratio", "passes",
            "days", "place", "excess", "ci90_lo", "ci90_hi", "pass_sd", "n_segments", "seg",
            "hours", "reason"]
    (hs[[c for c in cols if c in hs]] if not hs.empty else pd.DataFrame(columns=cols[:9])) \
        .pipe(_csv, out / "hotspots.csv")
    files.append("hotspots.csv")
    if res.compare is not None:
        res.compare.pipe(_csv, out / "compare.csv")
        files.append("compare.csv")
    res.aqi_hourly.pipe(_csv, out / "aqi_hourly.csv")
    res.aqi_daily.pipe(_csv, out / "aqi_daily.csv")
    files += ["aqi_hourly.csv", "aqi_daily.csv"]
    _csv(res.noise.assign(lat=seg.lat, lon=seg.lon), out / "noise.csv")
    files.append("noise.csv")
    # routing hints: segments that need the most passes before they can be trusted
    cov = sf[sf["channel"] == "pm10_ugm3"][["seg", "road", "lat", "lon", "days", "passes",
                                            "more_passes", "trustworthy"]]
    cov.sort_values(["trustworthy", "days", "more_passes"], ascending=[True, True, False]) \
        .pipe(_csv, out / "coverage.csv")
    files.append("coverage.csv")
    return files


def write_geojson(out: Path, seg: Segments, res: Result) -> str:
    wide = res.stats.pivot(index="seg", columns="channel", values="median")
    days = res.stats.groupby("seg")["days"].max()
    passes = res.stats.groupby("seg")["passes"].max()
    props = []
    noise = res.noise.set_index("seg")
    for i in range(len(seg)):
        p = {"segment": i, "road": seg.road[i],
             "days": int(days.get(i, 0)), "passes": int(passes.get(i, 0)),
             "trustworthy": bool(days.get(i, 0) >= res.params.min_days)}
        if i in wide.index:
            for c in CHANNELS:
                v = wide.at[i, c] if c in wide.columns else float("nan")
                p[c] = None if pd.isna(v) else round(float(v), 3)
        if i in noise.index:
            for k in ("laeq_day_dba", "laeq_night_dba", "noise_class"):
                v = noise.at[i, k]
                p[k] = None if (not isinstance(v, str) and pd.isna(v)) else (
                    v if isinstance(v, str) else round(float(v), 2))
        props.append(p)
    (out / "segments.geojson").write_text(json.dumps(geojson_features(seg, props)))
    return "segments.geojson"


# ----------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def plot_profiles(panels: list[tuple[str, pd.DataFrame]], title: str) -> bytes:
    """One place's hourly profiles, a panel per channel: the median pass value here and over
    the district, by local hour."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.4, 2.7), squeeze=False)
    h = np.arange(24)
    for ax, (c, prof) in zip(axes[0], panels):
        ax.plot(h, prof["district"].to_numpy(), color="#888888", label="district", lw=1.5)
        ax.plot(h, prof["here"].to_numpy(), "o-", color="#c0392b", label="here", lw=1.8, ms=3)
        ax.set_xlim(0, 23)
        ax.set_xticks(range(0, 24, 6))
        ax.set_xlabel("local hour", fontsize=8)
        ax.set_title(f"{LABEL[c]} ({UNIT[c]})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.45 / (3.6 * n + 0.4) * 3, right=0.97, bottom=0.2, top=0.8,
                        wspace=0.35)
    return _png(fig)


def plot_compare(cmp: pd.DataFrame, la: str, lb: str) -> bytes:
    plt = _plt()
    n = len(cmp)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * n + 2), 3.0))
    x = np.arange(n)
    base = cmp["median_a"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ra = np.ones(n)
        rb = cmp["median_b"].to_numpy() / base
        err = cmp["spread"].to_numpy() / base
    ax.bar(x - 0.2, ra, 0.4, label=la, color="#7f8c8d")
    ax.bar(x + 0.2, rb, 0.4, yerr=err, capsize=3, label=lb,
           color=["#27ae60" if s else "#bdc3c7" for s in cmp["larger_than_spread"]])
    ax.set_xticks(x)
    ax.set_xticklabels([f"#{p} {LABEL[c]}" for p, c in zip(cmp["place"], cmp["channel"])],
                       rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median, relative to before")
    ax.set_title("Before and after (bar: median; whisker: pass-to-pass spread)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.3, top=0.88)
    return _png(fig)


def plot_map(seg: Segments, vals: np.ndarray, trust: np.ndarray, c: str) -> bytes:
    plt = _plt()
    from matplotlib.collections import LineCollection
    ups, cols, title = scale_for(c, vals)
    fig, ax = plt.subplots(figsize=(6, 5))
    lines = [np.column_stack(ln.xy) for ln in seg.lines]
    lc = LineCollection(lines, colors=[colour(v, ups, cols) for v in vals],
                        linewidths=[4 if t else 2 for t in trust],
                        linestyles=["solid" if t else (0, (2, 2)) for t in trust])
    ax.add_collection(lc)
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"{LABEL[c]} ({UNIT[c]}): median of drive days; {title}", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92)
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

def _merc(lon, lat, z):
    n = 256.0 * 2 ** z
    x = (np.asarray(lon) + 180.0) / 360.0 * n
    la = np.radians(np.asarray(lat))
    y = (1.0 - np.log(np.tan(la) + 1.0 / np.cos(la)) / math.pi) / 2.0 * n
    return x, y


def svg_map(seg: Segments, res: Result, basemap: str | None, width: int = 860) -> tuple[str, dict]:
    """Inline SVG of the segments (Web Mercator), hotspot markers, and the per-channel colours
    and legends for the channel selector."""
    coords = [seg.lonlat_coords(i) for i in range(len(seg))]
    lon = np.array([p[0] for cc in coords for p in cc])
    lat = np.array([p[1] for cc in coords for p in cc])
    z = 18
    while z > 1:
        x, y = _merc(lon, lat, z)
        if x.max() - x.min() <= width - 60 and y.max() - y.min() <= 620:
            break
        z -= 1
    x, y = _merc(lon, lat, z)
    x0, y0 = x.min() - 30, y.min() - 30
    w = int(x.max() - x0 + 30)
    h = int(y.max() - y0 + 30)
    parts = [f'<svg id="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
             f'width="{w}" height="{h}" role="img" aria-label="street segments map">',
             f'<rect width="{w}" height="{h}" fill="#f4f4f0"/>']
    if basemap:
        parts.append('<g id="basemap" opacity="0.55">')
        tx0, tx1 = int(x0 // 256), int((x0 + w) // 256)
        ty0, ty1 = int(y0 // 256), int((y0 + h) // 256)
        for tx in range(tx0, tx1 + 1):
            for ty in range(ty0, ty1 + 1):
                url = html.escape(basemap.format(z=z, x=tx, y=ty))
                parts.append(f'<image href="{url}" x="{tx * 256 - x0:.1f}" y="{ty * 256 - y0:.1f}" '
                             f'width="256" height="256"/>')
        parts.append("</g>")
    days = res.stats.groupby("seg")["days"].max()
    trust = [bool(days.get(i, 0) >= res.params.min_days) for i in range(len(seg))]
    parts.append('<g id="segments" fill="none" stroke-linecap="round">')
    for i, cc in enumerate(coords):
        sx, sy = _merc([p[0] for p in cc], [p[1] for p in cc], z)
        pts = " ".join(f"{a - x0:.1f},{b - y0:.1f}" for a, b in zip(sx, sy))
        dash = '' if trust[i] else ' stroke-dasharray="3 3"'
        parts.append(f'<polyline class="seg" data-i="{i}" points="{pts}" stroke="{NO_DATA}" '
                     f'stroke-width="{6 if trust[i] else 3}"{dash}><title></title></polyline>')
    parts.append("</g>")
    # hotspot markers, one per place
    hs = res.hotspots
    parts.append('<g id="hotspots">')
    if not hs.empty:
        for place, g in hs.groupby("place"):
            r = g.sort_values("excess_ratio", ascending=False).iloc[0]
            mx, my = _merc([r["lon"]], [r["lat"]], z)
            chans = ", ".join(f"{LABEL[c]} #{k}" for c, k in zip(g["channel"], g["rank"]))
            parts.append(f'<g class="hot" transform="translate({mx[0] - x0:.1f},{my[0] - y0:.1f})">'
                         f'<circle r="11" fill="#fff" stroke="#222" stroke-width="2"/>'
                         f'<text text-anchor="middle" dy="4" font-size="12" font-weight="bold">'
                         f'{place}</text><title>place {place}: {html.escape(chans)}</title></g>')
    parts.append("</g>")
    if basemap:
        parts.append(f'<text x="{w - 6}" y="{h - 6}" text-anchor="end" font-size="10" '
                     f'fill="#555">map tiles © OpenStreetMap contributors (when online)</text>')
    parts.append("</svg>")
    # per-channel colours, titles and legends
    wide = res.stats.pivot(index="seg", columns="channel", values="median").reindex(range(len(seg)))
    st = res.stats.set_index(["channel", "seg"])
    layers = {}
    for c in MAP_CHANNELS:
        if c not in wide.columns:
            continue
        vals = wide[c].to_numpy(dtype=float)
        ups, cols, title = scale_for(c, vals)
        tips = []
        for i in range(len(seg)):
            if (c, i) in st.index:
                r = st.loc[(c, i)]
                tips.append(f"segment {i} ({seg.road[i]}): {LABEL[c]} {_fmt(r['median'])} {UNIT[c]}"
                            f"; {int(r['days'])} days, {int(r['passes'])} passes"
                            + ("" if r["trustworthy"] else " — not yet trustworthy"))
            else:
                tips.append(f"segment {i}: no {LABEL[c]} data")
        legend, lo = [], None
        for u, col in zip(ups, cols):
            lab = (f"≤ {u:g}" if lo is None else (f"> {lo:g}" if math.isinf(u) else f"{lo:g}–{u:g}"))
            legend.append([col, lab])
            lo = u
        layers[c] = {"label": f"{LABEL[c]} ({UNIT[c]})", "colours": [colour(v, ups, cols) for v in vals],
                     "tips": tips, "legend": legend, "scale": title}
    return "\n".join(parts), layers


CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:18px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}.grid{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}.legend div{display:flex;align-items:center;gap:6px;font-size:12px;margin:2px 0}
.sw{width:26px;height:8px;display:inline-block;border:1px solid #999}.note{font-size:12px;color:#555;max-width:900px}
select{font-size:14px}.ok{color:#1e8449}.no{color:#a04000}img{border:1px solid #eee}
"""

JS = """
const LAYERS = %s;
function show(ch){
  const L = LAYERS[ch]; if(!L) return;
  document.querySelectorAll('#segments polyline').forEach(function(el){
    const i = +el.dataset.i; el.setAttribute('stroke', L.colours[i]);
    el.querySelector('title').textContent = L.tips[i];
  });
  const lg = document.getElementById('legend'); lg.innerHTML = '';
  const h = document.createElement('b'); h.textContent = L.label; lg.appendChild(h);
  L.legend.forEach(function(e){
    const d = document.createElement('div'); const s = document.createElement('span');
    s.className = 'sw'; s.style.background = e[0]; d.appendChild(s);
    d.appendChild(document.createTextNode(e[1])); lg.appendChild(d);
  });
  const n = document.createElement('div'); n.textContent = L.scale; lg.appendChild(n);
  const d2 = document.createElement('div'); const s2 = document.createElement('span');
  s2.className='sw'; s2.style.background='#c8c8c8'; d2.appendChild(s2);
  d2.appendChild(document.createTextNode('no data; dashed: fewer than %d drive days')); lg.appendChild(d2);
  document.body.dataset.shown = ch;
}
document.getElementById('channel').addEventListener('change', function(e){ show(e.target.value); });
const bm = document.getElementById('bm');
if (bm) bm.addEventListener('change', function(e){
  const g = document.getElementById('basemap'); if (g) g.style.display = e.target.checked ? '' : 'none'; });
show(document.getElementById('channel').value);
"""


def _js_json(obj) -> str:
    """JSON safe inside a <script> element (a road name could hold "</script>")."""
    return json.dumps(obj).replace("<", "\\u003c")


def _img(data: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}"/>')


def _table(df: pd.DataFrame, cols: list[tuple[str, str, int | None]], left=()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols) + "</tr>"]
    for _, r in df.iterrows():
        cells = []
        for k, _, nd in cols:
            v = r.get(k)
            txt = _fmt(float(v), nd) if nd is not None and v is not None and not isinstance(v, str) \
                else ("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            cells.append(f'<td class="{"l" if k in left else ""}">{html.escape(txt)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_html(out: Path, seg: Segments, res: Result, meta: dict, profiles: dict,
               compare_png: bytes | None, basemap: str | None) -> str:
    svg, layers = svg_map(seg, res, basemap)
    default = next((c for c in MAP_CHANNELS if c in layers), None)
    opts = "".join(f'<option value="{c}"{" selected" if c == default else ""}>'
                   f'{html.escape(layers[c]["label"])}</option>' for c in layers)
    p = res.params
    hs = res.hotspots
    trusted = res.stats.groupby("seg")["days"].max() >= p.min_days
    body = [f"<h1>Street map and hotspots — {html.escape(meta.get('title', 'envbox'))}</h1>",
            f'<div class="meta">{html.escape(meta["range"])} · {meta["samples"]:,} samples from '
            f'{meta["devices"]} vehicles · {len(seg)} segments of ~{p.seg_len_m:g} m '
            f'({html.escape(seg.source)}) · {int(trusted.sum())} trustworthy '
            f'(≥ {p.min_days} drive days), {int((~trusted).sum())} not yet · made '
            f'{html.escape(meta["made"])}</div>',
            '<h2>Map</h2><div class="grid"><div>',
            f'<label>Channel <select id="channel">{opts}</select></label> '
            + ('<label><input type="checkbox" id="bm" checked/> basemap (online only)</label>'
               if basemap else ""),
            f"<div>{svg}</div></div>",
            '<div class="legend" id="legend"></div></div>',
            '<p class="note">Each segment shows the median over drive days of the day\'s mean of '
            'its passes (a pass: one vehicle\'s consecutive samples on the segment). Dashed, thin '
            f'segments have fewer than {p.min_days} drive days: not yet trustworthy. Numbered '
            'circles are hotspot places (table below).</p>']
    body.append("<h2>Hotspots</h2>")
    if hs.empty:
        body.append("<p>No segment stands clearly above the district's background.</p>")
    else:
        body.append(_table(hs.assign(label=hs["channel"].map(LABEL)),
                           [("place", "place", None), ("label", "channel", None),
                                ("rank", "rank", None), ("median", "median", 1),
                                ("background", "background", 1), ("excess_ratio", "× bg", 2),
                                ("passes", "passes", None), ("days", "days", None),
                                ("hours", "elevated (local h)", None),
                                ("lat", "lat", 5), ("lon", "lon", 5), ("reason", "reason", None)],
                            left=("label", "reason", "hours")))
        body.append('<p class="note">Rank is per channel (1 = the highest ratio to the district '
                    'background). Noise: the ratio is of sound energy (+3 dB = 2×).</p>')
        body.append('<div class="grid">')
        for place, png in profiles.items():
            body.append(f"<div>{_img(png, f'place {place} hourly profile')}</div>")
        body.append("</div>")
    if res.compare is not None:
        body.append(f"<h2>Before and after: {html.escape(meta['compare'])}</h2>")
        body.append(_table(res.compare.assign(label=res.compare["channel"].map(LABEL)),
                           [("place", "place", None), ("label", "channel", None),
                                         ("median_a", "before", 1), ("median_b", "after", 1),
                                         ("change", "change", 1), ("change_pct", "%", 0),
                                         ("spread", "spread", 1),
                                         ("larger_than_spread", "> spread", None),
                                         ("days_a", "days before", None),
                                         ("days_b", "days after", None)], left=("label",)))
        if compare_png:
            body.append(_img(compare_png, "before and after"))
    body.append("<h2>Standards (indicative for mobile data)</h2>")
    body.append('<p class="note">HJ 633—2026 IAQI/AQI on the windows the standard defines, from '
                'fleet-pooled means over the district (hours with at least '
                f'{p.min_hour_samples} samples; days from those hours). A moving fleet samples '
                'each hour for minutes, not for the hour: read these as indications, not as '
                'station values. The full tables are aqi_hourly.csv and aqi_daily.csv.</p>')
    if not res.aqi_daily.empty:
        body.append(_table(res.aqi_daily.tail(10),
                           [("date_local", "date", None), ("hours_covered", "hours", None),
                            ("pm25_conc", "PM2.5", 0), ("pm10_conc", "PM10", 0),
                            ("no2_conc", "NO2", 0), ("aqi", "AQI", None),
                            ("primary", "primary", None), ("category", "category", None)],
                           left=("date_local", "category", "primary")))
    nz = res.noise.dropna(subset=["laeq_day_dba"])
    if not nz.empty:
        over_d = int((nz["over_day_db"] > 0).sum())
        over_n = int((res.noise["over_night_db"] > 0).sum())
        body.append(f'<p class="note">Noise, GB 3096-2008: LAeq per segment, day (06–22) and '
                    f'night (22–06), energy mean of the passes, against class '
                    f'{html.escape(p.noise_class)} limits unless a zone file says otherwise: '
                    f'{over_d} segments above the day limit, {over_n} above the night limit '
                    f'(noise.csv).</p>')
    body.append("<h2>Files</h2><p class='note'>" + " · ".join(html.escape(f) for f in meta["files"])
                + "</p>")
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           "<meta name='viewport' content='width=device-width'>"
           f"<title>envbox report — {html.escape(meta.get('title', ''))}</title>"
           f"<style>{CSS}</style></head><body>" + "\n".join(body)
           + f"<script>{JS % (_js_json(layers), p.min_days)}</script></body></html>")
    (out / "report.html").write_text(doc, encoding="utf-8")
    return "report.html"
