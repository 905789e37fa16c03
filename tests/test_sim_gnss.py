"""simulator/models/gnss.py: NMEA sentences decode with pynmea2 to the ground truth."""

import datetime as dt

import pynmea2
import pytest
from hypothesis import given, settings, strategies as st

from envbox.simulator.models.gnss import GNSS
from envbox.simulator.truth import GroundTruth, read_ground_truth
from envbox.simulator.world import World

T0 = 1_764_300_000   # 2025-11-28 03:20:00 UTC


def _run(tmp_path, seconds, **kw):
    world = World(T0, seed=5)
    truth = GroundTruth(tmp_path / "gt.jsonl")
    g = GNSS(world, truth, seed=5, **kw)
    g.start(T0 - 0.3)
    out = b""
    t = T0 - 0.3
    while t < T0 + seconds:          # step like the server does, never behind
        t += 0.25
        out += g.due(t)
    truth.close()
    return g, out.decode("ascii"), read_ground_truth(truth.path, "gnss")


def test_rmc_then_gga_each_second_with_crlf_and_checksums(tmp_path):
    g, text, recs = _run(tmp_path, 30)
    assert text.endswith("\r\n")
    lines = text.split("\r\n")[:-1]
    assert len(lines) == 2 * len(recs) == 2 * g.counters["seconds_sent"]
    assert [l[3:6] for l in lines] == ["RMC", "GGA"] * len(recs)
    for l in lines:
        pynmea2.parse(l, check=True)           # raises on a bad checksum
    assert [r["t"] for r in recs] == list(range(T0, T0 + len(recs)))


def test_no_fix_first_three_seconds_then_fix(tmp_path):
    _, text, recs = _run(tmp_path, 10)
    for r in recs:
        rmc, gga = pynmea2.parse(r["rmc"]), pynmea2.parse(r["gga"])
        ts = dt.datetime.combine(rmc.datestamp, rmc.timestamp, dt.timezone.utc).timestamp()
        assert int(ts) == r["t"]           # time and date even without a fix
        if r["t"] < T0 + 3:
            assert rmc.status == "V" and gga.gps_qual == 0 and not gga.lat and not rmc.lat
            assert r["fix_quality"] == 0 and r["lat_e7"] is None
        else:
            assert rmc.status == "A" and gga.gps_qual == 1 and r["fix_quality"] == 1
    assert sum(1 for r in recs if r["fix_quality"] == 0) == 3


def _check_record(r):
    rmc, gga = pynmea2.parse(r["rmc"], check=True), pynmea2.parse(r["gga"], check=True)
    if r["fix_quality"] == 0:
        return
    for m in (rmc, gga):
        assert abs(m.latitude * 1e7 - r["lat_e7"]) <= 0.5 + 1e-3
        assert abs(m.longitude * 1e7 - r["lon_e7"]) <= 0.5 + 1e-3
    assert abs(float(rmc.spd_over_grnd) * 18.52 - r["speed_kmh_x10"]) <= 0.5 + 1e-9
    if rmc.true_course is None:
        assert r["course_x10"] is None
    else:
        assert abs(float(rmc.true_course) * 10 - r["course_x10"]) <= 0.5 + 1e-9
    assert int(gga.num_sats) == r["sats"]
    assert abs(float(gga.horizontal_dil) * 10 - r["hdop_x10"]) <= 0.5 + 1e-9
    assert round(float(gga.altitude) * 10) == r["alt_dm"]
    assert 350 <= r["alt_dm"] <= 450          # about 40 m above sea level
    assert float(gga.geo_sep) < 0


def test_ground_truth_matches_pynmea2_over_a_patrol(tmp_path):
    _, _, recs = _run(tmp_path, 900)         # more than a lap
    for r in recs:
        _check_record(r)
    moving = [r for r in recs if r["course_x10"] is not None]
    stopped = [r for r in recs if r["fix_quality"] and r["course_x10"] is None]
    assert moving and stopped                # it drives and it waits at red lights
    assert all(r["speed_kmh_x10"] <= 1 for r in stopped)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10 * 86400), st.sampled_from(["GP", "GN"]))
def test_any_second_decodes(offset_s, talker):
    world = World(T0, seed=2)
    g = GNSS(world, None, seed=2, talker=talker)
    g.start(T0)
    T = T0 + 10 + offset_s
    rmc, gga = g.sentences(T)
    assert rmc.startswith("$%sRMC," % talker) and gga.startswith("$%sGGA," % talker)
    assert rmc.endswith("\r\n") and gga.endswith("\r\n") and len(rmc) <= 82 and len(gga) <= 82
    _check_record(GNSS.truth_record(T, rmc, gga))


def test_talker_must_be_known():
    with pytest.raises(ValueError):
        GNSS(World(T0), talker="XX")


def test_falling_far_behind_skips_and_counts():
    g = GNSS(World(T0), None)
    g.start(T0)
    g.due(T0 + 100)
    assert g.counters["seconds_skipped"] > 90
    assert g.counters["seconds_sent"] < 10
