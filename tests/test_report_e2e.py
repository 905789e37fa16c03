"""envbox simulate -> mosquitto -> envbox-gateway -> InfluxDB 1.6.7 -> envbox report, on a small
world over 10 days (tests/worlds/small.toml): the report finds the planted hotspots and nothing
else, sees the netted lot's drop, flags the detour's segments, and its HTML opens in headless
Chromium. The default world's full month is tests/test_report_month.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envbox import servers, simulate
from envbox.report import cli as report_cli
from envbox.simulator.world import load_world

from report_checks import check_against_truth, dist_m, hotspot_rows, planted, read_csv

pytestmark = pytest.mark.slow
SMALL = Path(__file__).parent / "worlds" / "small.toml"
# a fixed campaign: the 10 local days before 2026-11-20 (Beijing), i.e. 2026-11-10 .. 11-19
END_DAY_S = datetime(2026, 11, 20, 4, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("small-run")
    info = simulate.run(d, load_world(SMALL), vehicles=2, days=10, end_day_s=END_DAY_S,
                        quiet=True)
    return d, info


@pytest.fixture(scope="module")
def small_report(small_run):
    d, _ = small_run
    out = d / "report"
    rc = report_cli.main(["--run", str(d), "--out", str(out), "--basemap", "none",
                          "--compare", "2026-11-10..2026-11-14", "2026-11-15..2026-11-19"])
    assert rc == 0
    return out


def test_every_sample_is_stored_once_with_unique_seq_and_time(small_run):
    d, info = small_run
    s = info["samples"]
    assert s["produced"] == s["published"] == s["stored"] > 15_000
    assert info["gateway"]["rejected"] == 0 and info["gateway"]["dead_lettered"] == 0
    assert s["warming_up"] > 0 and s["no_data"] > 0            # warm-ups and failed modules
    db = servers.InfluxDB1(info["db_dir"]).start()
    try:
        for dev in info["vehicles"]:
            n = db.rows(f"SELECT count(seq) FROM envbox WHERE device = '{dev}'", "envbox")[0]
            u = db.rows(f"SELECT count(distinct(seq)) FROM envbox WHERE device = '{dev}'",
                        "envbox")[0]
            assert n["count"] == u["count"] == s["stored_per_device"][dev]
    finally:
        db.stop()


def test_report_finds_the_planted_hotspots_and_nothing_else(small_run, small_report):
    d, _ = small_run
    assert check_against_truth(small_report, d) == []
    rows = hotspot_rows(small_report)
    pm10 = sorted((r for r in rows if r["channel"] == "pm10_ugm3"), key=lambda r: r["rank"])
    site = next(h for h in planted(d) if h["name"] == "dust_site")
    assert dist_m(pm10[0]["lat"], pm10[0]["lon"], site["lat"], site["lon"]) <= 100
    for r in rows:
        assert r["days"] >= 4 and r["excess_ratio"] > 1
        assert r["reason"] and r["hours"] is not None


def test_compare_shows_the_netted_lot_drop(small_run, small_report):
    d, _ = small_run
    lot = next(h for h in planted(d) if h["name"] == "netted_lot")
    cmp = read_csv(small_report / "compare.csv")
    near = [r for r in cmp if r["channel"] == "pm10_ugm3"
            and dist_m(float(r["lat"]), float(r["lon"]), lot["lat"], lot["lon"]) <= 100]
    assert near, cmp
    r = near[0]
    assert float(r["change"]) < 0 and -float(r["change"]) > float(r["spread"])
    assert r["larger_than_spread"] == "True"
    # the dust site did not change: its change stays within its spread
    site = next(h for h in planted(d) if h["name"] == "dust_site")
    s = next(r for r in cmp if r["channel"] == "pm10_ugm3"
             and dist_m(float(r["lat"]), float(r["lon"]), site["lat"], site["lon"]) <= 100)
    assert s["larger_than_spread"] == "False"


def test_detour_segments_are_not_yet_trustworthy(small_run, small_report):
    segs = read_csv(small_report / "segments.csv")
    pm = [r for r in segs if r["channel"] == "pm10_ugm3"]
    few = [r for r in pm if int(r["days"]) < 4]
    assert few, "the detour (2 days) should leave segments below 4 drive days"
    assert all(r["trustworthy"] == "False" for r in few)
    assert all(r["trustworthy"] == "True" for r in pm if int(r["days"]) >= 4)
    # they lie north of the loop, on the detour
    assert all(float(r["lat"]) > 39.8945 for r in few)
    gj = json.loads((small_report / "segments.geojson").read_text())
    assert len(gj["features"]) == len({r["seg"] for r in segs})
    assert any(not f["properties"]["trustworthy"] for f in gj["features"])


def test_report_from_the_tracks_alone(small_run):
    d, _ = small_run
    out = d / "report-tracks"
    assert report_cli.main(["--run", str(d), "--out", str(out), "--tracks", "--no-plots",
                            "--basemap", "none"]) == 0
    assert json.loads((out / "summary.json").read_text())["segment_source"] == "tracks"
    assert check_against_truth(out, d) == []


def test_standards_tables(small_report):
    daily = read_csv(small_report / "aqi_daily.csv")
    hourly = read_csv(small_report / "aqi_hourly.csv")
    assert 8 <= len(daily) <= 10 and hourly       # days without any patrol have no row
    assert all(r["indicative"] == "True" for r in daily + hourly)
    assert all(r["complete"] == "False" for r in daily)     # 4 h of patrol is not a 24 h mean
    # O3 8 h only where an 8 h window holds >= 6 valid hours; such a day has >= 6 hours
    assert all(int(r["hours_covered"]) >= 6 for r in daily if r["o3_8h_conc"])
    noise = read_csv(small_report / "noise.csv")
    assert {r["noise_class"] for r in noise} == {"4a"}
    assert any(r["laeq_day_dba"] for r in noise)


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium not found: run `make setup` (scripts/setup.sh installs it)"
    return exe


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--enable-logging=stderr", "--v=0"]


def test_html_report_opens_in_headless_chromium(small_report, tmp_path):
    exe = _chromium()
    page = (small_report / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                        "--window-size=1280,1100", f"--screenshot={shot}", page],
                       capture_output=True, text=True, timeout=120, env=env)
    assert shot.exists() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                          "--dump-dom", page], capture_output=True, text=True, timeout=120,
                         env=env)
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-shown="pm10_ugm3"' in html           # the script ran to its end
    segs = html.count('class="seg"')
    n = len({r["seg"] for r in read_csv(small_report / "segments.csv")})
    assert segs == n > 50
    # the script coloured the segments (no segment left in the no-data grey that has data)
    assert html.count('stroke="#c8c8c8"') < segs // 4
    assert 'class="hot"' in html
