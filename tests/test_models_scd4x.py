"""SCD4x simulator model against the golden vectors and against the firmware driver."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import scd4x as drv_mod
from envbox.simulator.models import scd4x as model_mod

from drivers_link import I2CLink, Recorder, idle, sample, status_name, vectors

V = vectors("scd4x")
C = {k: bytes.fromhex(h) for k, h in V["commands"].items()}


def test_model_reproduces_vectors():
    for v in V["vectors"]:
        b = bytes.fromhex(v["hex"])
        if v["ok"] and v["kind"] == "measurement":
            assert model_mod.measurement((b[0] << 8) | b[1], (b[3] << 8) | b[4], (b[6] << 8) | b[7]).hex() == v["hex"]
    m = model_mod.SCD4x(values={"co2_ppm": 500, "temp_c": 25.0, "rh_pct": 37.0})
    assert m.write(C["start_periodic_measurement"], 0.0)
    assert m.write(C["get_data_ready_status"], 1.0)
    assert m.read(3, 1.01).hex() == V["vectors"][3]["hex"]          # 80 00 A2: nothing yet
    assert m.write(C["get_data_ready_status"], 5.5)
    assert m.read(3, 5.51).hex() == V["vectors"][2]["hex"]          # 80 06 04
    assert m.write(C["read_measurement"], 5.6)
    out = m.read(9, 5.61)
    assert out[:3] == bytes.fromhex("01f433")                        # 500 ppm
    assert m.write(C["read_measurement"], 5.7) and m.read(9, 5.71) is None   # emptied by the read
    assert m.write(C["set_ambient_pressure_1013hpa"], 6.0)          # allowed while measuring
    assert not m.write(C["set_temperature_offset_4c"], 6.1)         # not while measuring
    assert m.write(C["stop_periodic_measurement"], 7.0)
    assert not m.write(C["get_data_ready_status"], 7.2)             # busy for 500 ms
    assert m.write(C["set_temperature_offset_4c"], 7.6) and m.temp_offset_raw == 1498
    bad = bytearray(C["set_ambient_pressure_1013hpa"])
    bad[4] ^= 1
    assert not m.write(bytes(bad), 8.0)                              # argument CRC checked


def run_driver(m, cfg=None, until_ms=10000):
    link = I2CLink({0x62: m})
    d = drv_mod.SCD4x(link, cfg or {})
    d.start(0)
    idle(d, link, 0, until_ms, step_ms=50)
    return d, link


@settings(max_examples=80, deadline=None)
@given(co2=st.integers(1, 40000), temp=st.floats(-10, 60), rh=st.floats(0, 100))
def test_model_to_driver_end_to_end(co2, temp, rh):
    rec = Recorder()
    m = model_mod.SCD4x(values={"co2_ppm": co2, "temp_c": temp, "rh_pct": rh}, truth=rec)
    d, link = run_driver(m, {"temp_rh": True})
    s = sample(d, link, 10000, step_ms=1)
    r = rec.last("scd4x")
    assert status_name(s, wire.CH_CO2) == "ok" and s.value[wire.CH_CO2] == co2 == r["co2_ppm"]
    assert abs(s.value[wire.CH_TEMP] / 100 - temp) <= 0.01
    assert abs(s.value[wire.CH_RH] / 100 - rh) <= 0.01


def test_sampling_every_10s_gets_fresh_data_every_time():
    rec = Recorder()
    m = model_mod.SCD4x(values={"co2_ppm": 415, "temp_c": 20.0, "rh_pct": 50.0}, truth=rec)
    d, link = run_driver(m)
    for k in range(1, 31):
        s = sample(d, link, k * 10000, step_ms=1)
        assert status_name(s, wire.CH_CO2) == "ok"
        idle(d, link, link.t_ms, (k + 1) * 10000, step_ms=200)
    assert len(rec.records) == 30 and d.timeouts == 0 and d.restarts == 0


@pytest.mark.parametrize("fault,want", [("bad_checksum", "checksum_error"),
                                        ("truncated", "checksum_error"),
                                        ("out_of_range", "out_of_range"), ("stuck", "ok")])
def test_measurement_faults(fault, want):
    rec = Recorder()
    m = model_mod.SCD4x(values={"co2_ppm": 415}, truth=rec)
    d, link = run_driver(m)
    assert status_name(sample(d, link, 10000, step_ms=1), wire.CH_CO2) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000, step_ms=1)
    assert status_name(s, wire.CH_CO2) == want == rec.last("scd4x")["status"]
    s = sample(d, link, 30000, step_ms=1)
    assert status_name(s, wire.CH_CO2) == "ok" and s.value[wire.CH_CO2] == 415


def test_nack_and_no_data_then_restart():
    m = model_mod.SCD4x(values={"co2_ppm": 415})
    d, link = run_driver(m)
    m.faults.set("warmup")                       # data-ready stays 0x8000
    for k in range(1, 5):
        s = sample(d, link, k * 10000, step_ms=5)
        assert status_name(s, wire.CH_CO2) in ("no_data", "warming_up")
        idle(d, link, link.t_ms, (k + 1) * 10000, step_ms=500)
    assert d.restarts >= 1
    m.faults.clear()
    m.faults.set("nack")
    s = sample(d, link, 60000, step_ms=5)
    assert status_name(s, wire.CH_CO2) in ("no_data", "warming_up") and d.nacks > 0
    m.faults.clear()
    idle(d, link, link.t_ms, 90000, step_ms=200)
    assert status_name(sample(d, link, 90000, step_ms=1), wire.CH_CO2) == "ok"


@settings(max_examples=150, deadline=None)
@given(ready=st.binary(min_size=3, max_size=3), meas=st.binary(min_size=9, max_size=9))
def test_random_replies_never_raise(ready, meas):
    class Dev:
        cmd = 0

        def write(self, data, t):
            self.cmd = data[:2]
            return True

        def read(self, n, t):
            return ready if n == 3 else meas

    link = I2CLink({0x62: Dev()})
    d = drv_mod.SCD4x(link, {"temp_rh": True})
    d.start(0)
    idle(d, link, 0, 10000, step_ms=100)
    s = sample(d, link, 10000, step_ms=1)
    assert s.status[wire.CH_CO2] != wire.STATUS_NOT_FITTED
