"""SDS011 simulator model against the golden vectors and against the firmware driver."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import sds011 as drv_mod
from envbox.simulator.models import sds011 as model_mod
from envbox.simulator.models._common import STATUS_OF

from drivers_link import BufUART, Recorder, SerialLink, sample, status_name, vectors

V = vectors("sds011")


def test_model_reproduces_vector_frames():
    for v in V["vectors"][:2]:
        d = v["decoded"]
        f = model_mod.data_frame(round(d["pm25_ugm3"] * 10), round(d["pm10_ugm3"] * 10), d["device_id"])
        assert f.hex() == v["hex"]
    assert model_mod.reply_frame(2, 1, 1, 0, 0x60A1).hex() == V["vectors"][2]["hex"]
    for name, (cmd, d1, d2) in {"work": (6, 1, 1), "sleep": (6, 1, 0), "query_mode": (2, 1, 1),
                                "active_mode": (2, 1, 0), "query": (4, 0, 0)}.items():
        assert model_mod.command(cmd, d1, d2).hex() == V["commands"][name]


def test_model_modes_sleep_and_query():
    m = model_mod.SDS011(values={"pm25_ugm3": 0.6, "pm10_ugm3": 0.6}, warmup_s=0)
    m.start(0.0)
    assert m.due(1.5).hex() == V["vectors"][0]["hex"]                 # active reporting
    m.receive(bytes.fromhex(V["commands"]["query_mode"]), 2.0)
    out = m.due(2.1)
    assert out[:3] == b"\xaa\xc5\x02" and m.query_mode
    assert m.due(9.0) == b""
    m.receive(bytes.fromhex(V["commands"]["query"]), 10.0)
    assert m.due(10.1).hex() == V["vectors"][0]["hex"]
    m.receive(bytes.fromhex(V["commands"]["sleep"]), 11.0)
    m.due(11.1)
    m.receive(bytes.fromhex(V["commands"]["query"]), 12.0)
    assert m.due(13.0) == b"" and m.counters["commands_while_asleep"] == 1


@settings(max_examples=300, deadline=None)
@given(a=st.integers(0, 0xFFFF), b=st.integers(0, 0xFFFF), dev=st.integers(0, 0xFFFF),
       chunk=st.integers(1, 12))
def test_encode_decode_identity(a, b, dev, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.SDS011(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += model_mod.data_frame(a, b, dev)
    for t in range(1, 12):
        d.poll(t)
    assert d.ready() and (d.pm25_x10, d.pm10_x10, d.device_id) == (a, b, dev)
    s = wire.Sample(b"t")
    d.fill(s, 20)
    assert s.value[wire.CH_PM25] == int(a / 10 + 0.5) and s.value[wire.CH_PM10] == int(b / 10 + 0.5)


@settings(max_examples=60, deadline=None)
@given(pm25=st.floats(0, 999), pm10=st.floats(0, 999))
def test_model_to_driver_end_to_end(pm25, pm10):
    rec = Recorder()
    m = model_mod.SDS011(values={"pm25_ugm3": pm25, "pm10_ugm3": pm10}, warmup_s=0, truth=rec)
    link = SerialLink(m)
    d = drv_mod.SDS011(link, {"warmup_ms": 0})
    d.start(0)
    s = sample(d, link, 10000)
    r = rec.last("sds011")
    assert r["mode"] == "query" and r["status"] == "ok" == status_name(s, wire.CH_PM25)
    assert s.value[wire.CH_PM25] == int(r["pm25_ugm3"] + 0.5)
    assert s.value[wire.CH_PM10] == int(r["pm10_ugm3"] + 0.5)


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "garbage", "stuck", "silence",
                                   "slow", "out_of_range"])
def test_each_fault_gives_the_status_ground_truth_expects(fault):
    rec = Recorder()
    m = model_mod.SDS011(values={"pm25_ugm3": 35.0, "pm10_ugm3": 60.0}, warmup_s=0, truth=rec, seed=9)
    link = SerialLink(m)
    d = drv_mod.SDS011(link, {"warmup_ms": 0})
    d.start(0)
    assert status_name(sample(d, link, 10000), wire.CH_PM25) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000)
    assert status_name(s, wire.CH_PM25) == STATUS_OF[fault] == rec.last("sds011")["status"]
    s = sample(d, link, 30000)
    assert status_name(s, wire.CH_PM10) == "ok" and s.value[wire.CH_PM10] == 60


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.SDS011(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 2000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    assert s.status[wire.CH_PM25] != wire.STATUS_NOT_FITTED
