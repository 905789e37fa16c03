"""Checks shared by the report's end-to-end tests: does a report's hotspots.csv match the planted
hotspots of a simulated run (truth.json)?"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def dist_m(lat1, lon1, lat2, lon2):
    dy = (lat1 - lat2) * 110_574.0
    dx = (lon1 - lon2) * 111_320.0 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def hotspot_rows(out: Path) -> list[dict]:
    rows = read_csv(out / "hotspots.csv")
    for r in rows:
        for k in ("lat", "lon", "median", "background", "excess_ratio"):
            r[k] = float(r[k])
        for k in ("rank", "passes", "days"):
            r[k] = int(r[k])
    return rows


def planted(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "truth.json").read_text())["hotspots"]


def check_against_truth(out: Path, run_dir: Path, radius_m: float = 100.0,
                        min_share: float = 0.6) -> list[str]:
    """Problems (empty = fine): a planted hotspot present on at least min_share of the days
    whose main channel has no reported hotspot within radius_m; a reported hotspot farther than
    radius_m from every planted one."""
    rows = hotspot_rows(out)
    truth = planted(run_dir)
    problems = []
    for h in truth:
        if h["present_share"] < min_share:
            continue
        for c in h["main_channels"]:
            near = [r for r in rows if r["channel"] == c
                    and dist_m(r["lat"], r["lon"], h["lat"], h["lon"]) <= radius_m]
            if not near:
                problems.append(f"planted {h['name']} {c}: no hotspot within {radius_m} m")
    for r in rows:
        d = min(dist_m(r["lat"], r["lon"], h["lat"], h["lon"]) for h in truth)
        if d > radius_m:
            problems.append(f"reported {r['channel']} at {r['lat']:.5f},{r['lon']:.5f} is "
                            f"{d:.0f} m from every planted hotspot")
    return problems


def nearest_planted(r: dict, truth: list[dict]) -> dict:
    return min(truth, key=lambda h: dist_m(r["lat"], r["lon"], h["lat"], h["lon"]))
