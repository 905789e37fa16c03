"""Street segments: the driven roads cut into pieces, and each GNSS fix matched to one.

Two sources of roads:
- a road file (GeoJSON LineStrings/MultiLineStrings, e.g. the city office's street centrelines):
  every line is cut into equal pieces as close to `seg_len_m` as the line allows, and a fix is
  matched to the nearest piece within `max_snap_m`;
- without one, the vehicles' own tracks: the fixes are binned into seg_len_m x seg_len_m cells,
  and each cell the fleet drove through becomes a segment drawn along the main direction of its
  fixes (their principal axis). Two streets closer than a cell share it: give a road file there.

Everything is computed in metres, in the UTM zone of the data (pyproj).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString, mapping
from shapely.ops import substring


class Projector:
    """WGS84 <-> the UTM zone of (lat0, lon0), vectorised."""

    def __init__(self, lat0: float, lon0: float):
        zone = int((lon0 + 180) // 6) + 1
        epsg = (32600 if lat0 >= 0 else 32700) + zone
        self.epsg = epsg
        self._fwd = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        self._inv = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)

    def xy(self, lon, lat):
        return self._fwd.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))

    def lonlat(self, x, y):
        return self._inv.transform(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


@dataclass
class Segments:
    """The segments: geometry (projected), midpoint lat/lon, and how they were made."""
    lines: list            # shapely LineStrings in projected metres
    road: list             # road name (or "track") per segment
    lat: np.ndarray        # midpoint
    lon: np.ndarray
    x: np.ndarray          # midpoint, projected
    y: np.ndarray
    source: str            # "roads" or "tracks"
    seg_len_m: float
    proj: Projector

    def __len__(self):
        return len(self.lines)

    def lonlat_coords(self, i: int) -> list[list[float]]:
        xs, ys = self.lines[i].xy
        lon, lat = self.proj.lonlat(np.asarray(xs), np.asarray(ys))
        return [[round(float(a), 6), round(float(b), 6)] for a, b in zip(lon, lat)]

    def neighbours(self, radius_m: float | None = None) -> list[set]:
        """Segments whose midpoints lie within radius_m (default 1.6 x seg_len_m)."""
        r = 1.6 * self.seg_len_m if radius_m is None else radius_m
        tree = cKDTree(np.column_stack([self.x, self.y]))
        nb = [set() for _ in range(len(self))]
        for a, b in tree.query_pairs(r):
            nb[a].add(b)
            nb[b].add(a)
        return nb


def load_roads(path: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """(name, [(lon, lat), ...]) of every line in a GeoJSON file."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    feats = doc.get("features", [doc]) if isinstance(doc, dict) else []
    out = []
    for i, ft in enumerate(feats):
        g = ft.get("geometry") or {}
        name = str((ft.get("properties") or {}).get("name", f"road {i + 1}"))
        if g.get("type") == "LineString":
            out.append((name, [tuple(p[:2]) for p in g["coordinates"]]))
        elif g.get("type") == "MultiLineString":
            for part in g["coordinates"]:
                out.append((name, [tuple(p[:2]) for p in part]))
    if not out:
        raise ValueError(f"{path}: no LineString or MultiLineString features")
    return out


def _finish(lines, roads, proj, source, seg_len_m) -> Segments:
    mid = [ln.interpolate(0.5, normalized=True) for ln in lines]
    x = np.array([p.x for p in mid])
    y = np.array([p.y for p in mid])
    lon, lat = proj.lonlat(x, y)
    return Segments(lines, roads, np.asarray(lat), np.asarray(lon), x, y, source, seg_len_m,
                    proj)


def segments_from_roads(roads, proj: Projector, seg_len_m: float) -> Segments:
    lines, names = [], []
    for name, pts in roads:
        lon = [p[0] for p in pts]
        lat = [p[1] for p in pts]
        x, y = proj.xy(lon, lat)
        ln = LineString(list(zip(x, y)))
        if ln.length <= 0:
            continue
        n = max(1, int(round(ln.length / seg_len_m)))
        step = ln.length / n
        for k in range(n):
            lines.append(substring(ln, k * step, (k + 1) * step))
            names.append(name)
    return _finish(lines, names, proj, "roads", seg_len_m)


def match_to_roads(seg: Segments, x: np.ndarray, y: np.ndarray, max_snap_m: float) -> np.ndarray:
    """Segment index of each point (-1: farther than max_snap_m from every segment). The
    segments are sampled every metre, so a match is the nearest segment to within 0.5 m."""
    px, py, ids = [], [], []
    for i, ln in enumerate(seg.lines):
        n = max(2, int(math.ceil(ln.length)) + 1)
        pts = shapely.line_interpolate_point(ln, np.linspace(0, ln.length, n))
        c = shapely.get_coordinates(pts)
        px.append(c[:, 0])
        py.append(c[:, 1])
        ids.append(np.full(n, i, dtype=np.int32))
    tree = cKDTree(np.column_stack([np.concatenate(px), np.concatenate(py)]))
    d, j = tree.query(np.column_stack([x, y]), distance_upper_bound=max_snap_m, workers=2)
    ids = np.concatenate(ids)
    out = np.full(len(x), -1, dtype=np.int32)
    ok = np.isfinite(d)
    out[ok] = ids[j[ok]]
    return out


def segments_from_tracks(x: np.ndarray, y: np.ndarray, proj: Projector, seg_len_m: float,
                         min_fixes: int = 3) -> tuple[Segments, np.ndarray]:
    """Cells of the tracks as segments; returns them and the segment index of every fix."""
    cx = np.floor(x / seg_len_m).astype(np.int64)
    cy = np.floor(y / seg_len_m).astype(np.int64)
    key = (cx << 32) ^ (cy & 0xFFFFFFFF)
    uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    keep = counts >= min_fixes
    new_id = np.full(len(uniq), -1, dtype=np.int32)
    new_id[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    seg_of = new_id[inv]
    # principal axis of each kept cell's fixes
    order = np.argsort(seg_of, kind="stable")
    s_sorted = seg_of[order]
    starts = np.searchsorted(s_sorted, np.arange(int(keep.sum())))
    ends = np.searchsorted(s_sorted, np.arange(int(keep.sum())), side="right")
    lines = []
    half = seg_len_m / 2.0
    for a, b in zip(starts, ends):
        idx = order[a:b]
        px, py = x[idx], y[idx]
        mx, my = float(px.mean()), float(py.mean())
        if len(idx) >= 2:
            cov = np.cov(np.vstack([px - mx, py - my]))
            w, v = np.linalg.eigh(cov)
            dx, dy = v[:, int(np.argmax(w))]
        else:
            dx, dy = 1.0, 0.0
        proj_len = (px - mx) * dx + (py - my) * dy
        lo = max(-half, float(proj_len.min()))
        hi = min(half, float(proj_len.max()))
        if hi - lo < 1.0:
            lo, hi = -0.5, 0.5
        lines.append(LineString([(mx + lo * dx, my + lo * dy), (mx + hi * dx, my + hi * dy)]))
    seg = _finish(lines, ["track"] * len(lines), proj, "tracks", seg_len_m)
    return seg, seg_of


def geojson_features(seg: Segments, props: list[dict]) -> dict:
    feats = []
    for i in range(len(seg)):
        feats.append({"type": "Feature", "id": i, "properties": props[i],
                      "geometry": {"type": "LineString", "coordinates": seg.lonlat_coords(i)}})
    return {"type": "FeatureCollection", "features": feats}


__all__ = ["Projector", "Segments", "load_roads", "segments_from_roads", "match_to_roads",
           "segments_from_tracks", "geojson_features", "mapping", "pd"]
