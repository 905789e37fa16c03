"""MH-Z19B simulator model against the golden vectors and against the firmware driver."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import mhz19b as drv_mod
from envbox.simulator.models import mhz19b as model_mod
from envbox.simulator.models._common import STATUS_OF

from drivers_link import BufUART, Recorder, SerialLink, sample, status_name, vectors

V = vectors("mhz19b")
CH = wire.CH_CO2


def test_model_reproduces_vector_frames():
    assert model_mod.reply_frame(544, -40).hex() == V["vectors"][0]["hex"]
    assert model_mod.reply_frame(636, 26).hex() == V["vectors"][1]["hex"]


def test_model_answers_read_and_takes_config_commands():
    m = model_mod.MHZ19B(values={"co2_ppm": 636.0, "temp_c": 26.0}, warmup_s=0)
    m.start(0.0)
    m.receive(bytes.fromhex(V["commands"]["abc_off"] + V["commands"]["range_5000"]), 1.0)
    assert m.abc is False and m.range_ppm == 5000 and m.due(2.0) == b""
    m.receive(bytes.fromhex(V["commands"]["read"]), 10.0)
    assert m.due(10.1).hex() == V["vectors"][1]["hex"]


def test_model_warmup_reads_500():
    m = model_mod.MHZ19B(values={"co2_ppm": 700.0}, warmup_s=180)
    m.start(0.0)
    m.receive(bytes.fromhex(V["commands"]["read"]), 10.0)
    assert m.due(11.0)[2:4] == bytes((0x01, 0xF4))


@settings(max_examples=300, deadline=None)
@given(ppm=st.integers(0, 0xFFFF), temp=st.integers(-40, 100), chunk=st.integers(1, 12))
def test_encode_decode_identity(ppm, temp, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.MHZ19B(u, {"warmup_ms": 0, "range_ppm": 0xFFFF})
    d.start(0)
    d.request(0)
    u.data += model_mod.reply_frame(ppm, temp)
    for t in range(1, 12):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 20)
    assert status_name(s, CH) == "ok" and s.value[CH] == ppm and d.temp_c == temp


@settings(max_examples=60, deadline=None)
@given(ppm=st.floats(300, 5000))
def test_model_to_driver_end_to_end(ppm):
    rec = Recorder()
    m = model_mod.MHZ19B(values={"co2_ppm": ppm}, warmup_s=0, truth=rec)
    link = SerialLink(m)
    d = drv_mod.MHZ19B(link, {"warmup_ms": 0})
    d.start(0)
    s = sample(d, link, 10000)
    r = rec.last("mhz19b")
    assert r["status"] == "ok" == status_name(s, CH) and s.value[CH] == r["co2_ppm"]


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "garbage", "stuck", "silence",
                                   "slow", "out_of_range"])
def test_each_fault_gives_the_status_ground_truth_expects(fault):
    rec = Recorder()
    m = model_mod.MHZ19B(values={"co2_ppm": 450.0}, warmup_s=0, truth=rec, seed=2)
    link = SerialLink(m)
    d = drv_mod.MHZ19B(link, {"warmup_ms": 0})
    d.start(0)
    assert status_name(sample(d, link, 10000), CH) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000)
    assert status_name(s, CH) == STATUS_OF[fault] == rec.last("mhz19b")["status"]
    s = sample(d, link, 30000)
    assert status_name(s, CH) == "ok" and s.value[CH] == 450


def test_stuck_repeats_the_last_value():
    m = model_mod.MHZ19B(values={"co2_ppm": 450.0}, warmup_s=0)
    link = SerialLink(m)
    d = drv_mod.MHZ19B(link, {"warmup_ms": 0})
    d.start(0)
    sample(d, link, 10000)
    m.faults.set("stuck")
    m.values.fixed["co2_ppm"] = 900.0
    assert sample(d, link, 20000).value[CH] == 450
    m.faults.clear()
    assert sample(d, link, 30000).value[CH] == 900


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.MHZ19B(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 2000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    assert s.status[CH] != wire.STATUS_NOT_FITTED
