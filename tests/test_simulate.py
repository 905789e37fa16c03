"""simulator/fleet.py and `envbox simulate`: the samples a fleet's boxes send (unique seq and
time per device, warm-ups, quantisation, failed modules, catch-up batches) and the run through
the real broker and gateway into VictoriaMetrics (the 2.x sink's store); the InfluxDB 1.x path
is tests/test_report_e2e.py."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envbox import simulate
from envbox.firmware import wire
from envbox.report import read
from envbox.servers import VictoriaMetrics
from envbox.simulator import fleet as F
from envbox.simulator.world import load_world

SMALL = Path(__file__).parent / "worlds" / "small.toml"
END_DAY_S = datetime(2026, 11, 20, 4, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def sampler_output():
    spec = load_world(SMALL)
    day0 = F.campaign_start_s(spec, 3, END_DAY_S)
    fs = F.FleetSampler(spec, 2, 3, day0, seed=5)
    msgs = list(fs.messages())
    return spec, day0, fs, msgs


def _decoded(msgs):
    out = []
    for dev, payload, n in msgs:
        ds = wire.decode_many(payload)
        assert len(ds) == n and all(d["device"] == dev for d in ds)
        out.extend(ds)
    return out


def test_campaign_days_end_at_local_midnight():
    spec = load_world(SMALL)
    day0 = F.campaign_start_s(spec, 3, END_DAY_S)
    assert day0 == datetime(2026, 11, 16, 16, tzinfo=timezone.utc).timestamp()  # 11-17 00:00 +8


def test_seq_and_time_unique_per_device_and_in_the_campaign(sampler_output):
    _, day0, fs, msgs = sampler_output
    ds = _decoded(msgs)
    assert len(ds) == fs.total_samples() == fs.counts["samples"]
    for dev in ("t-001", "t-002"):
        mine = [d for d in ds if d["device"] == dev]
        seqs = sorted(d["seq"] for d in mine)
        assert seqs == list(range(1, len(mine) + 1))        # no gap, no repeat
        assert len({d["t_utc_s"] for d in mine}) == len(mine)
        assert all(day0 <= d["t_utc_s"] < day0 + 3 * 86400 and d["t_utc_s"] % 10 == 0
                   for d in mine)


def test_deterministic():
    spec = load_world(SMALL)
    day0 = F.campaign_start_s(spec, 2, END_DAY_S)
    a = [p for _, p, _ in F.FleetSampler(spec, 2, 2, day0, seed=5).messages()]
    b = [p for _, p, _ in F.FleetSampler(spec, 2, 2, day0, seed=5).messages()]
    c = [p for _, p, _ in F.FleetSampler(spec, 2, 2, day0, seed=6).messages()]
    assert a == b and a != c


def test_modules_warm_up_after_each_ignition(sampler_output):
    _, _, fs, msgs = sampler_output
    ds = {(d["device"], d["t_utc_s"]): d for d in _decoded(msgs)}
    for sp in fs.shifts:
        first = ds[(sp.device, sp.t_on_s + 10)]["channels"]
        assert first["pm25_ugm3"]["status"] == "warming_up"      # PMS5003: 30 s
        assert first["no2_ppb"]["status"] == "warming_up"        # ZE03: 180 s
        at_60 = ds[(sp.device, sp.t_on_s + 60)]["channels"]
        assert at_60["pm25_ugm3"]["status"] != "warming_up"
        assert at_60["no2_ppb"]["status"] == "warming_up"
        assert ds[(sp.device, sp.t_on_s + 190)]["channels"]["no2_ppb"]["status"] != "warming_up"
        assert first["noise_dba"]["status"] in ("ok", "no_data", "checksum_error")


def test_values_carry_the_modules_quantisation_and_noise(sampler_output):
    _, _, _, msgs = sampler_output
    ds = _decoded(msgs)
    ok = lambda c: [d["channels"][c]["value"] for d in ds if d["channels"][c]["status"] == "ok"]
    assert all(v % 10 == 0 for v in ok("no2_ppb"))                # ZE03: 0.01 ppm steps
    assert all(abs(v * 10 - round(v * 10)) < 1e-9 for v in ok("co_ppm"))
    assert all(v == int(v) for v in ok("pm10_ugm3"))
    for d in ds:
        c = d["channels"]
        if all(c[k]["status"] == "ok" for k in ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")):
            assert c["pm1_ugm3"]["value"] <= c["pm25_ugm3"]["value"] <= c["pm10_ugm3"]["value"]
        if c["noise_dba"]["status"] == "ok":
            assert c["noise_lmin_dba"]["value"] <= c["noise_dba"]["value"] <= c["noise_lmax_dba"]["value"]
    # noise: neighbouring samples differ (the meter and the street are never constant)
    assert len(set(ok("pm25_ugm3"))) > 20 and len(set(ok("noise_dba"))) > 50


def test_failed_channels_and_catch_up_batches():
    spec = load_world(SMALL)
    day0 = F.campaign_start_s(spec, 6, END_DAY_S)
    fs = F.FleetSampler(spec, 2, 6, day0, seed=2)
    msgs = list(fs.messages())
    st = Counter(c["status"] for d in _decoded(msgs) for c in d["channels"].values())
    assert st["no_data"] > 0 and st["checksum_error"] > 0 and st["warming_up"] > 0
    assert fs.counts["batch_messages"] > 0
    batches = [p for _, p, _ in msgs if p[0] == wire.KIND_BATCH]
    assert batches and all(len(wire.decode_many(p)) <= F.BATCH_MAX_SAMPLES for p in batches)
    # flags as the box sets them: one clock source, never the retired 0x04
    clock = wire.FLAG_CLOCK_FROM_GPS | wire.FLAG_CLOCK_FROM_NTP | wire.FLAG_CLOCK_FROM_RTC
    for d in (d for p in batches for d in wire.decode_many(p)):
        assert not d["flags"] & 0x04 and bin(d["flags"] & clock).count("1") == 1


def test_planted_truth_main_channels():
    spec = load_world()
    truth = {h["name"]: h for h in F.planted_truth(spec, 30, F.campaign_start_s(spec, 30))}
    assert truth["construction_site"]["main_channels"] == ["pm25_ugm3", "pm10_ugm3"]
    assert truth["waste_transfer_point"]["main_channels"] == ["hcho_ppb"]
    assert truth["bare_earth_lot"]["present_share"] == 0.5
    assert truth["traffic_light_0"]["main_channels"] == ["no2_ppb", "co_ppm", "noise_dba"]
    assert all(h["road_distance_m"] < 60 for h in truth.values())


def test_gateway_config_keeps_weeks_old_samples(tmp_path):
    from envbox.gateway import config as gwconfig
    p = simulate.gateway_config(tmp_path / "g.toml", 1883, tmp_path / "s.sqlite3", "influx1",
                                "http://127.0.0.1:8086", 9100, "pw")
    cfg = gwconfig.load(p, env={})             # the gateway accepts what simulate writes
    assert cfg.mqtt.username == "envbox-gateway" and cfg.http.listen == "127.0.0.1:9100"
    assert cfg.ingest.max_past_s == 0          # 0: no too-old limit (weeks-old history)


@pytest.mark.slow
def test_simulate_into_victoriametrics_and_read_back(tmp_path):
    info = simulate.run(tmp_path, load_world(SMALL), vehicles=2, days=2, sink="influx2",
                        end_day_s=END_DAY_S, quiet=True)
    s = info["samples"]
    assert s["produced"] == s["stored"] > 2000
    vm = VictoriaMetrics(info["db_dir"]).start()
    try:
        st = {}
        df = read.read_victoriametrics(vm.url, info["start_s"], info["end_s"], stats=st)
    finally:
        vm.stop()
    assert len(df) == s["produced"]
    assert set(df["device"]) == {"t-001", "t-002"}
    assert df["pm10_ugm3"].notna().mean() > 0.9 and df["lat_deg"].between(39.88, 39.9).all()
    # and the report reads the same run through its own VictoriaMetrics start
    from envbox.report import cli as report_cli
    out = tmp_path / "report"
    assert report_cli.main(["--run", str(tmp_path), "--out", str(out), "--min-days", "1",
                            "--no-plots", "--basemap", "none"]) == 0
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == s["produced"] and summary["hotspots"] > 0
