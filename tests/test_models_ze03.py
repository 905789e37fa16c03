"""ZE03 simulator model against the golden vectors and against the firmware driver."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import ze03 as drv_mod
from envbox.simulator.models import ze03 as model_mod
from envbox.simulator.models._common import STATUS_OF

from drivers_link import BufUART as _Buf, Recorder, SerialLink, sample, status_name, vectors

V = vectors("ze03")
CH = {"o3": wire.CH_O3, "no2": wire.CH_NO2, "so2": wire.CH_SO2, "co": wire.CH_CO}
CODE = {0x2A: "o3", 0x2C: "no2", 0x2B: "so2", 0x04: "co"}


def test_model_reproduces_vector_frames():
    for v in V["vectors"]:
        if not v["ok"] or v.get("kind") == "ack":
            continue
        d = v["decoded"]
        if v["kind"] == "qa":
            f = model_mod.qa_frame(d["gas_code"], d["conc_raw"], d["decimals"])
        else:
            f = model_mod.active_frame(d["gas_code"], 0x04, d["decimals"], d["conc_raw"], d["full_range"])
        assert f.hex() == v["hex"], v["name"]


def test_model_answers_commands_with_vector_bytes():
    m = model_mod.ZE03(gas="o3", values={"o3_ppb": 380.0}, warmup_s=0)
    m.start(0.0)
    m.receive(bytes.fromhex(V["commands"]["qa_mode"]), 0.5)
    assert m.due(0.6).hex() == V["commands"]["mode_ack"]
    m.receive(bytes.fromhex(V["commands"]["read"]), 10.0)
    assert m.due(10.1).hex() == V["vectors"][0]["hex"]      # O3 0.38 ppm, 2 decimals
    m.receive(bytes.fromhex(V["commands"]["read"])[:-1] + b"\x00", 20.0)   # bad checksum
    assert m.due(20.5) == b""
    assert m.counters["command_checksum_errors"] == 1


def test_driver_commands_are_the_vector_commands():
    m = model_mod.ZE03(gas="co", values={"co_ppm": 3.0}, warmup_s=0)
    link = SerialLink(m)
    d = drv_mod.ZE03(link, {"gas": "co", "warmup_ms": 0})
    d.start(0)
    sample(d, link, 10000)
    assert bytes(link.written).hex() == V["commands"]["qa_mode"] + V["commands"]["read"]


@settings(max_examples=300, deadline=None)
@given(gas=st.sampled_from(sorted(model_mod.GASES)), conc=st.integers(0, 0xFFFF),
       dec=st.integers(0, 3), chunk=st.integers(1, 12))
def test_qa_frame_encode_decode_identity(gas, conc, dec, chunk):
    code = model_mod.GASES[gas][0]
    f = model_mod.qa_frame(code, conc, dec)
    u = _Buf(b"", chunk)
    d = drv_mod.ZE03(u, {"gas": gas, "warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += f
    for t in range(1, 12):
        d.poll(t)
    assert d.ready() and d.conc_raw == conc and d.decimals == dec
    per_ppm = 10 if gas == "co" else 1000          # wire units per ppm: co_ppm x10, *_ppb x1
    assert d.value == round(conc * per_ppm / 10 ** dec + 1e-9)


@settings(max_examples=100, deadline=None)
@given(gas=st.sampled_from(sorted(model_mod.GASES)), ppm=st.floats(0, 9.99))
def test_model_to_driver_end_to_end(gas, ppm):
    key, per_ppm = model_mod.GASES[gas][1], model_mod.GASES[gas][2]
    rec = Recorder()
    m = model_mod.ZE03(gas=gas, values={key: ppm * per_ppm}, warmup_s=0, truth=rec)
    link = SerialLink(m)
    d = drv_mod.ZE03(link, {"gas": gas, "warmup_ms": 0})
    d.start(0)
    s = sample(d, link, 10000)
    r = rec.last(m.name)
    assert r["mode"] == "qa" and r["status"] == "ok"
    scale = wire.CHANNELS[CH[gas]][1]
    assert status_name(s, CH[gas]) == "ok"
    assert s.value[CH[gas]] == round(r[key] * scale)


def test_active_upload_after_power_on_is_decoded():
    m = model_mod.ZE03(gas="no2", values={"no2_ppb": 42.0}, warmup_s=0)
    link = SerialLink(m)
    d = drv_mod.ZE03(link, {"gas": "no2", "warmup_ms": 0, "mode": "active"})
    d.start(0)
    s = sample(d, link, 3000)
    assert status_name(s, wire.CH_NO2) == "ok" and s.value[wire.CH_NO2] == 42


def test_legacy_layout_with_matching_cfg():
    m = model_mod.ZE03(gas="o3", values={"o3_ppb": 700.0}, warmup_s=0, decimals=1, legacy_layout=True)
    link = SerialLink(m)
    d = drv_mod.ZE03(link, {"gas": "o3", "warmup_ms": 0, "legacy_decimals": 1})
    d.start(0)
    s = sample(d, link, 10000)
    assert s.value[wire.CH_O3] == 700


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "garbage", "stuck", "silence",
                                   "slow", "warmup", "out_of_range"])
def test_each_fault_gives_the_status_ground_truth_expects(fault):
    rec = Recorder()
    m = model_mod.ZE03(gas="co", values={"co_ppm": 2.5}, warmup_s=0, truth=rec, seed=3)
    link = SerialLink(m)
    d = drv_mod.ZE03(link, {"gas": "co", "warmup_ms": 0})
    d.start(0)
    s = sample(d, link, 10000)
    assert status_name(s, wire.CH_CO) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000)
    want = STATUS_OF[fault]
    if fault == "warmup":
        want = "ok"     # the model reads 0 while warming; the driver's own timer has expired
    assert status_name(s, wire.CH_CO) == want
    if fault != "warmup":
        assert rec.last(m.name)["status"] == want
    # and it recovers on the next sample (a late answer from "slow" must not be taken for it)
    s = sample(d, link, 30000)
    assert status_name(s, wire.CH_CO) == "ok" and s.value[wire.CH_CO] == 25


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), gas=st.sampled_from(sorted(model_mod.GASES)),
       chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, gas, chunk):
    u = _Buf(b"", chunk)
    d = drv_mod.ZE03(u, {"gas": gas, "warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 2000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    assert s.status[CH[gas]] != wire.STATUS_NOT_FITTED
