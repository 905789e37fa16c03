"""ZE08-CH2O simulator model against the golden vectors and against the firmware driver."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import ze08 as drv_mod
from envbox.simulator.models import ze08 as model_mod
from envbox.simulator.models._common import STATUS_OF

from drivers_link import BufUART as _Buf, Recorder, SerialLink, sample, status_name, vectors

V = vectors("ze08")
CH = wire.CH_HCHO


def test_model_reproduces_vector_frames():
    act, qa = V["vectors"][0], V["vectors"][1]
    assert model_mod.active_frame(act["decoded"]["hcho_ppb"], act["decoded"]["full_range_ppb"]).hex() == act["hex"]
    assert model_mod.qa_frame(qa["decoded"]["hcho_ppb"], qa["decoded"]["hcho_ugm3"]).hex() == qa["hex"]


def test_model_streams_at_power_on_and_answers_in_qa_mode():
    m = model_mod.ZE08(values={"hcho_ppb": 37.0}, warmup_s=0)
    m.start(0.0)
    assert m.due(1.5).hex() == V["vectors"][0]["hex"]          # active upload, 37 ppb
    m.receive(bytes.fromhex(V["commands"]["qa_mode"]), 1.6)
    assert m.due(5.0) == b""                                   # streaming stopped, no ack
    m.receive(bytes.fromhex(V["commands"]["read"]), 10.0)
    out = m.due(10.1)
    assert out[:2] == b"\xff\x86" and out[6:8] == bytes((0, 37))


def test_driver_commands_are_the_vector_commands():
    m = model_mod.ZE08(values={"hcho_ppb": 20.0}, warmup_s=0)
    link = SerialLink(m)
    d = drv_mod.ZE08(link, {"warmup_ms": 0})
    d.start(0)
    sample(d, link, 10000)
    assert bytes(link.written).hex() == V["commands"]["qa_mode"] + V["commands"]["read"]


@settings(max_examples=200, deadline=None)
@given(ppb=st.integers(0, 0xFFFF), ugm3=st.integers(0, 0xFFFF), active=st.booleans(),
       chunk=st.integers(1, 12))
def test_encode_decode_identity(ppb, ugm3, active, chunk):
    f = model_mod.active_frame(ppb) if active else model_mod.qa_frame(ppb, ugm3)
    u = _Buf(b"", chunk)
    d = drv_mod.ZE08(u, {"warmup_ms": 0, "range_ppb": 0xFFFF})
    d.start(0)
    d.request(0)
    u.data += f
    for t in range(1, 12):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 20)
    assert status_name(s, CH) == "ok" and s.value[CH] == ppb
    if not active:
        assert d.hcho_ugm3 == ugm3


@settings(max_examples=60, deadline=None)
@given(ppb=st.floats(0, 4999))
def test_model_to_driver_end_to_end(ppb):
    rec = Recorder()
    m = model_mod.ZE08(values={"hcho_ppb": ppb}, warmup_s=0, truth=rec)
    link = SerialLink(m)
    d = drv_mod.ZE08(link, {"warmup_ms": 0})
    d.start(0)
    s = sample(d, link, 10000)
    r = rec.last("ze08")
    assert r["status"] == "ok" and status_name(s, CH) == "ok" and s.value[CH] == r["hcho_ppb"]


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "garbage", "stuck", "silence",
                                   "slow", "out_of_range"])
def test_each_fault_gives_the_status_ground_truth_expects(fault):
    rec = Recorder()
    m = model_mod.ZE08(values={"hcho_ppb": 12.0}, warmup_s=0, truth=rec, seed=5)
    link = SerialLink(m)
    d = drv_mod.ZE08(link, {"warmup_ms": 0})
    d.start(0)
    assert status_name(sample(d, link, 10000), CH) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000)
    assert status_name(s, CH) == STATUS_OF[fault] == rec.last("ze08")["status"]
    s = sample(d, link, 30000)
    assert status_name(s, CH) == "ok" and s.value[CH] == 12


def test_warmup_of_model_and_driver():
    rec = Recorder()
    m = model_mod.ZE08(values={"hcho_ppb": 12.0}, warmup_s=60, truth=rec)
    link = SerialLink(m)
    d = drv_mod.ZE08(link, {"warmup_ms": 60000})
    d.start(0)
    s = sample(d, link, 10000)
    assert status_name(s, CH) == "warming_up" == rec.last("ze08")["status"]
    s = sample(d, link, 70000)
    assert status_name(s, CH) == "ok"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, chunk):
    u = _Buf(b"", chunk)
    d = drv_mod.ZE08(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 2000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    assert s.status[CH] != wire.STATUS_NOT_FITTED
