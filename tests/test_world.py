"""simulator/world.py world files: the default file is today's Shuangjing world, other files load
from TOML or JSON, bad files are refused with the key named, hotspots appear and get cleaned up
on their days."""

from __future__ import annotations

import json

import pytest

from envbox.simulator import world as W

T0 = 1_764_300_000   # 2025-11-28 11:20 Beijing


def test_default_world_file_is_the_module_constants():
    spec = W.load_world()
    assert spec.name == "shuangjing" and spec.utc_offset_h == 8
    assert (W.LAT_MIN, W.LAT_MAX, W.LON_MIN, W.LON_MAX) == spec.bounds == (39.88, 39.90, 116.45, 116.48)
    assert W.ROUTE == spec.routes["loop"] and len(W.ROUTE) == 8
    names = [h.name for h in W.HOTSPOTS]
    assert names[:3] == ["construction_site", "waste_transfer_point", "bare_earth_lot"]
    assert names[3:] == ["traffic_light_0", "traffic_light_2", "traffic_light_4", "traffic_light_6"]
    assert [v.device for v in spec.vehicles] == ["sj-001", "sj-002", "sj-003"]
    w = W.World(T0, seed=3)
    assert w.route.points == W.ROUTE


def test_json_world_equals_toml(tmp_path):
    import tomllib
    doc = tomllib.loads(open(W.DEFAULT_WORLD, encoding="utf-8").read())
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    a, b = W.load_world(), W.load_world(p)
    assert a.routes == b.routes and a.hotspots == b.hotspots and a.vehicles == b.vehicles


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.pop("bounds"), "[bounds]"),
    (lambda d: d["hotspots"][0]["add"].update(pm26_ugm3=1.0), "unknown channel 'pm26_ugm3'"),
    (lambda d: d["hotspots"][0].update(lat=40.5), "outside [bounds]"),
    (lambda d: d["vehicles"][0].update(route="nowhere"), "unknown route 'nowhere'"),
    (lambda d: d["vehicles"][0]["shifts"][0].update(start="25:00"), "not a time of day"),
    (lambda d: d["vehicles"][1].update(device="sj-001"), "listed twice"),
    (lambda d: d["vehicles"][0].update(device="a/b"), "device must be"),
    (lambda d: d["routes"][0].update(points=[[39.89, 116.46, False]] * 4), "signalled"),
    (lambda d: d["hotspots"][0].update(sigma_m="wide"), "sigma_m must be a number"),
])
def test_bad_world_files_are_refused_with_the_key(tmp_path, edit, words):
    import tomllib
    doc = tomllib.loads(open(W.DEFAULT_WORLD, encoding="utf-8").read())
    edit(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(W.WorldError) as e:
        W.load_world(p)
    assert words in str(e.value) and str(p) in str(e.value)


def test_unreadable_world_file(tmp_path):
    with pytest.raises(W.WorldError, match="not-there.toml"):
        W.load_world(tmp_path / "not-there.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [")
    with pytest.raises(W.WorldError, match="broken.toml"):
        W.load_world(bad)


def test_hotspot_cleanup_and_appearance_days():
    spec = W.load_world()
    lot = next(h for h in spec.hotspots if h.name == "bare_earth_lot")
    assert lot.cleanup_day == 15
    day0 = W.local_midnight_s(T0, 8)
    f = spec.field(seed=1, day0_s=day0)
    noon = day0 + 4 * 3600          # 12:00 local on day 0
    before = f.at(noon + 14 * 86400, lot.lat, lot.lon)["pm10_ugm3"]
    after = f.at(noon + 15 * 86400, lot.lat, lot.lon)["pm10_ugm3"]
    bg_before = f.at(noon + 14 * 86400, 39.8985, 116.4520)["pm10_ugm3"]
    bg_after = f.at(noon + 15 * 86400, 39.8985, 116.4520)["pm10_ugm3"]
    assert before - bg_before > 80 and abs(after - bg_after) < 1
    h = W.Hotspot("x", 39.89, 116.46, 50.0, {"pm10_ugm3": 10.0}, appear_day=3, cleanup_day=5)
    assert [h.present(d) for d in range(7)] == [False] * 3 + [True] * 2 + [False] * 2
    assert h.present(None)


def test_day_to_day_factor_is_per_local_day_and_seeded():
    spec = W.load_world()
    f1, f2 = spec.field(seed=1), spec.field(seed=1)
    day0 = W.local_midnight_s(T0, 8)
    facs = [f1.day_factor(day0 + d * 86400 + 3600) for d in range(30)]
    assert facs == [f2.day_factor(day0 + d * 86400 + 3600) for d in range(30)]
    assert f1.day_factor(day0 + 3600) == f1.day_factor(day0 + 86399)     # same local day
    assert 0.4 < min(facs) < 1 < max(facs) < 2.5
    assert W.PollutionField(seed=1).day_factor(T0) == 1.0                # off unless asked


def test_fleet_beyond_the_listed_vehicles_gets_new_ids():
    spec = W.load_world()
    fleet = spec.fleet(7)
    ids = [v.device for v in fleet]
    assert ids[:3] == ["sj-001", "sj-002", "sj-003"] and len(set(ids)) == 7
    assert all(i.startswith("sj-") for i in ids)
    assert fleet[3].shifts == fleet[0].shifts and fleet[3].detour_days == {}
    with pytest.raises(W.WorldError):
        spec.fleet(0)


def test_roads_geojson_are_the_closed_routes():
    gj = W.load_world().roads_geojson()
    assert [f["properties"]["name"] for f in gj["features"]] == ["loop", "north_detour"]
    c = gj["features"][0]["geometry"]["coordinates"]
    assert c[0] == c[-1] and len(c) == 9 and c[0] == [116.4612, 39.8937]


def test_the_single_box_simulation_takes_a_world_file(tmp_path):
    from pathlib import Path

    from envbox.simulator.run import Simulation
    small = Path(__file__).parent / "worlds" / "small.toml"
    sim = Simulation(tmp_path / "run", minutes=1, start_virtual_s=T0, world=str(small))
    assert sim.world.route.points == W.load_world(small).routes["loop"]
    assert [h.name for h in sim.world.field.hotspots][:2] == ["dust_site", "paint_shop"]
    sim.truth.close()
    with pytest.raises(W.WorldError):
        Simulation(tmp_path / "run2", minutes=1, start_virtual_s=T0, world=str(tmp_path / "x.toml"))
