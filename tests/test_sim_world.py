"""simulator/world.py: the patrol stays in Shuangjing, drives at city speeds, and the pollution
field has its hotspots."""

import math

import pytest

from envbox.simulator import world as W
from envbox.simulator.clock import VirtualClock

T0 = 1_764_300_000   # 11:20 local time


def _track(seed, seconds, step=1.0):
    w = W.World(T0, seed=seed)
    return [w.vehicle_state(T0 + k * step) for k in range(int(seconds / step))]


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_patrol_stays_in_the_box_at_city_speeds(seed):
    tr = _track(seed, 2 * 3600)
    assert all(W.LAT_MIN <= s.lat <= W.LAT_MAX and W.LON_MIN <= s.lon <= W.LON_MAX for s in tr)
    assert max(s.speed_kmh for s in tr) <= 50.0 + 1e-9
    assert min(s.speed_kmh for s in tr) >= 0.0
    # accelerations are a car's, not a teleport: |dv| <= 2.5 m/s^2 over each second
    for a, b in zip(tr, tr[1:]):
        assert abs(b.speed_kmh - a.speed_kmh) / 3.6 <= 2.5 + 1e-6
        # the position moves by about the speed (straight line, corners cut slightly)
        d_m = math.hypot((b.lat - a.lat) * 110_574, (b.lon - a.lon) * 85_400)
        assert d_m <= max(a.speed_kmh, b.speed_kmh) / 3.6 + 0.5
    # it drives laps: back near the start at least once in two hours
    moving = [s.speed_kmh for s in tr if s.speed_kmh > 1]
    assert 20 <= sum(moving) / len(moving) <= 50
    assert tr[-1].s_m > 2 * W.Route().length_m


def test_stops_at_lights_last_20_to_60_s():
    tr = _track(4, 3 * 3600)
    stops, run = [], 0
    for s in tr[10:]:                          # skip the departure wait
        if s.speed_kmh == 0.0:
            run += 1
        elif run:
            stops.append(run)
            run = 0
    assert len(stops) >= 5
    assert all(19 <= r <= 61 for r in stops), stops
    lights = [(lat, lon) for lat, lon, light in W.ROUTE if light]
    for s in tr:
        if s.speed_kmh == 0.0 and s.t > T0 + 10:
            assert min(math.hypot((s.lat - la) * 110_574, (s.lon - lo) * 85_400)
                       for la, lo in lights) < 1.0


def test_deterministic_from_seed_and_order_independent():
    a = W.World(T0, seed=11)
    b = W.World(T0, seed=11)
    c = W.World(T0, seed=12)
    late = b.vehicle_state(T0 + 5000)          # query out of order first
    assert a.vehicle_state(T0 + 5000) == late
    assert a.vehicle_state(T0 + 777.5) == b.vehicle_state(T0 + 777.5)
    assert a.vehicle_state(T0 + 5000) != c.vehicle_state(T0 + 5000)
    assert a.channels(T0 + 10, 39.89, 116.46) == b.channels(T0 + 10, 39.89, 116.46)


def test_field_channels_and_hotspots():
    f = W.PollutionField(seed=1)
    t = T0
    bg = f.at(t, 39.8985, 116.4520)            # a corner of the box far from every hotspot
    assert set(W.CHANNELS) <= set(bg)
    site = next(h for h in W.HOTSPOTS if h.name == "construction_site")
    waste = next(h for h in W.HOTSPOTS if h.name == "waste_transfer_point")
    light = next(h for h in W.HOTSPOTS if h.name.startswith("traffic_light"))
    at_site = f.at(t, site.lat, site.lon)
    assert at_site["pm10_ugm3"] > bg["pm10_ugm3"] + 100
    at_waste = f.at(t, waste.lat, waste.lon)
    assert at_waste["hcho_ppb"] > bg["hcho_ppb"] + 30 and at_waste["odour_ou"] > 20
    at_light = f.at(t, light.lat, light.lon)
    assert at_light["no2_ppb"] > bg["no2_ppb"] + 25
    assert at_light["co_ppm"] > bg["co_ppm"] and at_light["noise_dba"] > bg["noise_dba"]
    assert at_light["o3_ppb"] < bg["o3_ppb"]   # titrated by traffic NO
    for v in (bg, at_site, at_waste, at_light):
        assert v["pm1_ugm3"] <= v["pm25_ugm3"] <= v["pm10_ugm3"]
        counts = [v[k] for k in ("n03_per_dl", "n05_per_dl", "n10_per_dl", "n25_per_dl",
                                 "n50_per_dl", "n100_per_dl")]
        assert counts == sorted(counts, reverse=True) and counts[-1] >= 0
        assert 0 < v["rh_pct"] < 100 and -20 < v["temp_c"] < 40 and 380 < v["co2_ppm"] < 600


def test_construction_dust_is_a_daytime_thing():
    f = W.PollutionField(seed=1)
    site = next(h for h in W.HOTSPOTS if h.name == "construction_site")
    noon = 1_764_302_400      # 12:00 local
    night = noon + 12 * 3600
    excess = lambda t: f.at(t, site.lat, site.lon)["pm10_ugm3"] - f.at(t, 39.8985, 116.4520)["pm10_ugm3"]
    assert excess(noon) > 3 * excess(night) > 0


def test_clock_maps_wall_to_virtual():
    c = VirtualClock(T0, warp=60.0, t0_wall_s=1000.0)
    assert c.virtual_at(1001.0) == T0 + 60.0
    assert c.wall_at(T0 + 120.0) == 1002.0
    assert c.wall_seconds(3600.0) == 60.0
    with pytest.raises(ValueError):
        VirtualClock(T0, warp=0)
