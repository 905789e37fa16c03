"""tools/report: the method step by step on hand-made data (passes, drive days, medians,
intervals, trust, hotspots, before/after), the HJ 633-2026 and GB 3096-2008 tables, parsing of
the database's answers. End to end through real servers: tests/test_report_e2e.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envbox.report import analysis as A
from envbox.report import cli, geo, read
from envbox.report import standards as S

DAY0 = 1_794_240_000          # a local midnight (UTC+8)
P = A.Params()


# ------------------------------------------------------------------------------ standards

@pytest.mark.parametrize("col, conc, want", [
    ("pm25_24h", 75, 114), ("pm25_24h", 60, 100), ("pm25_24h", 35, 50), ("pm25_24h", 0, 0),
    ("pm10_24h", 150, 112), ("pm10_24h", 120, 100), ("pm10_24h", 50, 50),
    ("no2_1h", 200, 100), ("so2_24h", 150, 100), ("o3_1h", 200, 100), ("o3_8h", 160, 100),
    ("co_24h", 4.0, 100), ("co_1h", 10.04, 100), ("co_1h", 10.06, 101),
    ("pm25_24h", 75.5, 115),   # 75.5 rounds half-even to 76 -> 114.5 -> ceiling 115
    ("pm25_24h", 600, 500),
])
def test_hj633_2026_iaqi(col, conc, want):
    assert S.iaqi(col, conc) == want


def test_hj633_windows_the_standard_does_not_define():
    assert S.iaqi("so2_1h", 801) is None          # the 24 h value is used instead
    assert S.iaqi("o3_8h", 801) is None           # the 1 h value is used instead
    assert S.iaqi("pm25_24h", float("nan")) is None
    assert S.aqi_of({"pm25": 114, "pm10": 112, "no2": None}) == (114, ["pm25"])
    assert S.aqi_of({"pm25": 40, "pm10": 45}) == (45, [])          # no primary below 51
    assert S.aqi_of({"pm25": 120, "pm10": 120}) == (120, ["pm10", "pm25"])
    assert S.category(114)[1] == "Lightly polluted" and S.category(50)[1] == "Excellent"


def test_units_and_noise_limits():
    assert S.to_standard_units("no2", 100) == pytest.approx(188.2, abs=0.1)
    assert S.to_standard_units("co", 1.0) == pytest.approx(1.146, abs=0.001)
    assert S.NOISE_LIMITS_DBA["4a"] == (70, 55) and S.NOISE_LIMITS_DBA["1"] == (55, 45)
    assert S.laeq([60, 70]) == pytest.approx(67.40, abs=0.01)
    assert S.laeq([65, 65, 65]) == pytest.approx(65.0)


# ------------------------------------------------------------------------------ passes

def frame(rows):
    """rows: (device, t, segment, value) -> (df, seg_of) with pm10 = value, noise = value."""
    df = pd.DataFrame({"device": pd.Categorical([r[0] for r in rows]),
                       "t": np.array([r[1] for r in rows], dtype=np.int64)})
    for c in read.POSITION:
        df[c] = np.float32(1.0)
    for c in read.CHANNELS:
        df[c] = np.float32(np.nan)
    df["pm10_ugm3"] = np.array([r[3] for r in rows], dtype=np.float32)
    df["noise_dba"] = np.array([r[3] for r in rows], dtype=np.float32)
    return df, np.array([r[2] for r in rows], dtype=np.int32)


def test_a_red_light_counts_as_one_pass():
    # six samples standing on segment 0 (an idling queue), then one on segment 1, then 0 again
    rows = [("a", DAY0 + 10 * k, 0, 100.0) for k in range(6)] + [("a", DAY0 + 60, 1, 20.0),
                                                                 ("a", DAY0 + 70, 0, 40.0)]
    df, seg = frame(rows)
    pt = A.make_passes(df, seg, P).table
    assert list(pt["seg"]) == [0, 1, 0] and list(pt["n"]) == [6, 1, 1]
    assert list(pt["pm10_ugm3"]) == [100.0, 20.0, 40.0]


def test_a_gap_or_another_vehicle_starts_a_new_pass():
    rows = [("a", DAY0, 0, 10.0), ("a", DAY0 + 10, 0, 20.0), ("a", DAY0 + 200, 0, 30.0),
            ("b", DAY0 + 10, 0, 50.0)]
    df, seg = frame(rows)
    df = df.sort_values(["device", "t"]).reset_index(drop=True)
    pt = A.make_passes(df, seg, P).table
    assert list(pt["n"]) == [2, 1, 1] and list(pt["pm10_ugm3"]) == [15.0, 30.0, 50.0]


def test_noise_passes_are_energy_means():
    rows = [("a", DAY0, 0, 60.0), ("a", DAY0 + 10, 0, 70.0)]
    df, seg = frame(rows)
    pt = A.make_passes(df, seg, P).table
    assert pt["noise_dba"][0] == pytest.approx(67.40, abs=0.01)
    assert pt["pm10_ugm3"][0] == 65.0


def test_unmatched_samples_are_left_out():
    rows = [("a", DAY0, -1, 999.0), ("a", DAY0 + 10, 0, 10.0)]
    df, seg = frame(rows)
    pt = A.make_passes(df, seg, P).table
    assert len(pt) == 1 and pt["pm10_ugm3"][0] == 10.0


# ------------------------------------------------------------------------------ segment stats

def days_of(values_per_day, seg=0, passes_per_day=1, dev="a"):
    rows = []
    for d, v in enumerate(values_per_day):
        for k in range(passes_per_day):
            rows.append((dev, DAY0 + d * 86400 + 3 * 3600 + k * 1000, seg, v))
    return rows


def stats_for(rows, n_segs=1):
    df, seg = frame(sorted(rows))
    df = df.sort_values(["device", "t"]).reset_index(drop=True)
    return A.segment_stats(A.make_passes(df, seg, P), n_segs, P)


def test_median_of_drive_days_with_order_statistic_interval():
    vals = [10, 12, 50, 11, 13, 9, 14, 12, 10, 11]        # one plume day does not move it
    st = stats_for(days_of(vals, passes_per_day=2)).set_index("channel").loc["pm10_ugm3"]
    assert st["days"] == 10 and st["passes"] == 20
    assert st["median"] == pytest.approx(11.5)
    # n = 10, 90 %: ranks 2 and 9 of the sorted day values
    assert (st["ci90_lo"], st["ci90_hi"]) == (10.0, 14.0)
    assert st["trustworthy"]


def test_day_means_weigh_days_not_passes():
    # day 0: 30 passes at 100 (a vehicle circling a hotspot all day); days 1-4: one pass at 10
    rows = days_of([100], passes_per_day=30) + [r for r in days_of([0, 10, 10, 10, 10])[1:]]
    st = stats_for(rows).set_index("channel").loc["pm10_ugm3"]
    assert st["days"] == 5 and st["median"] == 10.0


def test_fewer_than_4_days_is_not_trustworthy_and_no_interval_below_5():
    st3 = stats_for(days_of([10, 11, 12])).set_index("channel").loc["pm10_ugm3"]
    assert not st3["trustworthy"] and np.isnan(st3["ci90_lo"])
    st4 = stats_for(days_of([10, 11, 12, 13])).set_index("channel").loc["pm10_ugm3"]
    assert st4["trustworthy"] and np.isnan(st4["ci90_lo"])
    st5 = stats_for(days_of([10, 11, 12, 13, 14])).set_index("channel").loc["pm10_ugm3"]
    assert (st5["ci90_lo"], st5["ci90_hi"]) == (10.0, 14.0)   # n = 5: min and max (93.75 %)


def test_passes_needed_grow_with_the_square_of_the_spread():
    z = np.random.default_rng(1).standard_normal(40)
    a, b, c = (stats_for(days_of(list(100 + sd * z))).set_index("channel").loc["pm10_ugm3"]
               for sd in (10, 40, 80))
    # +-25 % of 100 with sd 40: (1.645 * 1.2533 * 40 / 25)^2 = 10.9 passes
    assert 6 <= b["passes_for_target"] <= 18 and b["more_passes"] == 0
    assert 3 < c["passes_for_target"] / b["passes_for_target"] < 5.5
    d = stats_for(days_of([40, 160, 70, 130, 100, 50, 150, 90])).set_index("channel") \
        .loc["pm10_ugm3"]                   # robust sd 59.3 around 95: 27 passes
    assert d["more_passes"] == d["passes_for_target"] - 8 > 0
    assert a["passes_for_target"] <= 2


# ------------------------------------------------------------------------------ hotspots

def line_stats(values, days=10):
    rows = []
    for i, v in enumerate(values):
        rows += days_of([v] * days, seg=i)
    return stats_for(rows, len(values))


def line_nb(n, reach=1):
    return [set(j for j in range(max(0, i - reach), min(n, i + reach + 1)) if j != i)
            for i in range(n)]


def test_one_bump_is_one_hotspot_at_its_peak():
    vals = [10.0] * 20
    vals[9:12] = [20.0, 40.0, 25.0]
    st = line_stats(vals)
    bg = A.backgrounds(st)
    hs = A.find_hotspots(st, bg, line_nb(20), np.arange(20) * 1e-3, np.zeros(20), P,
                         line_nb(20, 2))
    pm = hs[hs["channel"] == "pm10_ugm3"]
    assert len(pm) == 1 and pm.iloc[0]["seg"] == 10 and pm.iloc[0]["excess_ratio"] == 4.0
    assert sorted(pm.iloc[0]["segments"]) == [9, 10, 11] and bg["pm10_ugm3"] == 10.0


def test_two_bumps_in_one_run_are_two_hotspots():
    vals = [10.0] * 20
    vals[5:12] = [30, 40, 30, 20, 30, 35, 30]
    hs = A.find_hotspots(line_stats(vals), {"pm10_ugm3": 10.0}, line_nb(20),
                         np.arange(20) * 1e-3, np.zeros(20), P, line_nb(20, 2))
    assert sorted(hs["seg"]) == [6, 10]
    assert list(hs.sort_values("rank")["seg"]) == [6, 10]


def test_no_hotspot_below_the_margin_or_on_few_days():
    vals = [10.0] * 10
    vals[4] = 14.0                          # 1.4 x background: not a clear margin
    assert A.find_hotspots(line_stats(vals), {"pm10_ugm3": 10.0}, line_nb(10),
                           np.zeros(10), np.zeros(10), P).empty
    vals[4] = 50.0
    st = line_stats(vals, days=3)           # a clear bump, but 3 drive days only
    assert A.find_hotspots(st, {"pm10_ugm3": 10.0}, line_nb(10), np.zeros(10), np.zeros(10),
                           P).empty


def test_compare_tells_a_real_drop_from_the_spread():
    rng = np.random.default_rng(3)
    before = list(100 + 15 * rng.standard_normal(10))
    after = list(40 + 15 * rng.standard_normal(10))
    rows = days_of(before + after, seg=0) + days_of([10.0] * 20, seg=1)
    df, seg = frame(sorted(rows))
    passes = A.make_passes(df, seg, P)
    hs = pd.DataFrame([{"channel": "pm10_ugm3", "seg": 0, "segments": [0], "rank": 1,
                        "place": 1, "lat": 0.0, "lon": 0.0}])
    cmp = A.compare(passes, hs, [set(), set()], P, (DAY0, DAY0 + 10 * 86400),
                    (DAY0 + 10 * 86400, DAY0 + 20 * 86400)).iloc[0]
    assert cmp["change"] < -40 and cmp["larger_than_spread"]
    same = A.compare(passes, hs, [set(), set()], P, (DAY0, DAY0 + 5 * 86400),
                     (DAY0 + 5 * 86400, DAY0 + 10 * 86400)).iloc[0]
    assert not same["larger_than_spread"]


def test_hour_ranges():
    assert A.hour_ranges([7, 8, 9, 17, 18]) == "07-10, 17-19"
    assert A.hour_ranges([]) == "" and A.hour_ranges([23]) == "23-24"


# ------------------------------------------------------------------------------ geometry, input

def test_roads_cut_into_equal_segments_and_fixes_matched():
    proj = geo.Projector(39.89, 116.46)
    roads = [("a", [(116.4600, 39.8900), (116.4700, 39.8900)])]      # about 855 m
    seg = geo.segments_from_roads(roads, proj, 50.0)
    assert len(seg) == 17 and all(abs(ln.length - 855 / 17) < 2 for ln in seg.lines)
    x, y = proj.xy([116.4601, 116.4650, 116.4650], [39.89001, 39.89010, 39.8910])
    m = geo.match_to_roads(seg, np.asarray(x), np.asarray(y), 20.0)
    assert m[0] == 0 and m[1] in (8, 9) and m[2] == -1             # the last one is 111 m off


def test_segments_from_tracks_follow_the_fixes():
    proj = geo.Projector(39.89, 116.46)
    lon = np.linspace(116.460, 116.470, 400)
    lat = np.full(400, 39.89) + np.random.default_rng(0).normal(0, 1e-5, 400)
    x, y = proj.xy(lon, lat)
    seg, seg_of = geo.segments_from_tracks(np.asarray(x), np.asarray(y), proj, 50.0)
    assert 16 <= len(seg) <= 20 and (seg_of >= 0).mean() > 0.95
    assert np.allclose(seg.lat, 39.89, atol=5e-5)


def test_influx_csv_answer_is_parsed_and_flagged_values_dropped():
    body = (b"name,tags,time,lat_deg,lon_deg,speed_kmh,pm10_ugm3,pm10_ugm3_status,no2_ppb,"
            b"no2_ppb_status\n"
            b"envbox,device=sj-001,1794240010,39.89,116.46,20,55,0,30,0\n"
            b"envbox,device=sj-001,1794240020,39.89,116.46,20,1500,4,,2\n"
            b"envbox,device=sj-002,1794240010,,,,40,0,20,0\n")
    st = {}
    df = read._clean(read.influx1_parse(body), st)
    assert list(df["device"]) == ["sj-001", "sj-001"]               # no position: dropped
    assert df["pm10_ugm3"].tolist()[0] == 55 and np.isnan(df["pm10_ugm3"].tolist()[1])
    assert st == {"out_of_range": 1, "no_position": 1}
    assert read.influx1_parse(b"").empty
    with pytest.raises(read.ReadError):
        read.influx1_parse(b'{"error":"database not found: x"}')


def test_query_names_the_range_and_devices():
    q = read.influx1_query(10, 20, ["sj-001", "o'brien"])
    assert "time >= 10s AND time < 20s" in q and "\"device\" = 'sj-001'" in q
    assert "o\\'brien" in q and q.endswith('GROUP BY "device"')


def test_dates_and_windows():
    from datetime import datetime, timezone
    off = 8.0
    midnight_utc = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp())
    assert cli.parse_when("2026-11-20", off) == midnight_utc - 8 * 3600
    assert cli.parse_when("2026-11-20", off, end=True) == midnight_utc - 8 * 3600 + 86400
    assert cli.parse_when("2026-11-20T08:00:00Z", off) == midnight_utc + 8 * 3600
    assert cli.parse_when("2026-11-20T08:00", off) == midnight_utc
    a, b = cli.parse_window("2026-11-03..2026-11-04", off)
    assert b - a == 2 * 86400
    with pytest.raises(cli.ReportError):
        cli.parse_window("2026-11-03", off)
    with pytest.raises(cli.ReportError):
        cli.parse_when("yesterday", off)


def test_report_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["--run", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a simulate run directory" in capsys.readouterr().err


def test_road_names_cannot_break_out_of_the_page_script():
    from envbox.report.render import _js_json
    import json
    s = _js_json({"tips": ["road </script><script>alert(1)</script> <!-- x"]})
    assert "</script" not in s and "<!--" not in s
    assert json.loads(s)["tips"][0].startswith("road </script>")


def test_noise_zones_from_the_offices_file(tmp_path):
    import json
    cli._load_modules(plots=False)
    proj = geo.Projector(39.89, 116.46)
    seg = geo.segments_from_roads([("a", [(116.4600, 39.8900), (116.4700, 39.8900)])], proj, 100)
    zone = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"class": "1"},
        "geometry": {"type": "Polygon", "coordinates": [[[116.459, 39.889], [116.465, 39.889],
                                                         [116.465, 39.891], [116.459, 39.891],
                                                         [116.459, 39.889]]]}}]}
    f = tmp_path / "zones.geojson"
    f.write_text(json.dumps(zone))
    z = cli.zones_for(seg, str(f), "4a")
    assert z[0] == "1" and z[-1] == "4a" and set(z) == {"1", "4a"}
    zone["features"][0]["properties"]["class"] = "5"
    f.write_text(json.dumps(zone))
    with pytest.raises(cli.ReportError, match="zone class '5'"):
        cli.zones_for(seg, str(f), "4a")
