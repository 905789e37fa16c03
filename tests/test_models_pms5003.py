"""PMS5003 simulator model against the golden vectors and against the firmware driver, with the
shared faults of simulator/models/_common.py (the same checks as the other parts' model tests)."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import pms5003 as drv_mod
from envbox.simulator.models import pms5003 as model_mod
from envbox.simulator.models._common import STATUS_OF
from envbox.simulator.world import World

from drivers_link import T0_S, BufUART, Recorder, SerialLink, idle, sample, status_name, vectors

V = vectors("pms5003")
NAMES = [name for name, _ in wire.CHANNELS]


def test_model_reproduces_vector_frames():
    for v in V["vectors"]:
        if v["ok"] and v.get("kind") == "data" and "bytes_skipped" not in v:
            d = v["decoded"]
            assert model_mod.data_frame(d, d["version"], d["error_code"]).hex() == v["hex"]
        elif v["ok"] and v.get("kind") == "ack":
            assert model_mod.ack(v["decoded"]["cmd"], v["decoded"]["data"]).hex() == v["hex"]


def test_driver_commands_are_the_vector_commands():
    cmds = {k: bytes.fromhex(h) for k, h in V["commands"].items()}
    assert (drv_mod.CMD_PASSIVE, drv_mod.CMD_READ) == (cmds["passive_mode"], cmds["read"])
    assert drv_mod.CMD_PASSIVE == model_mod.command(model_mod.CMD_MODE, 0)
    assert drv_mod.CMD_ACTIVE == model_mod.command(model_mod.CMD_MODE, 1)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=12, max_size=12),
       version=st.integers(0, 255), chunk=st.integers(1, 40))
def test_encode_decode_identity(words, version, chunk):
    values = dict(zip(model_mod.FIELDS, words))
    u = BufUART(chunk=chunk)
    d = drv_mod.PMS5003(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += model_mod.data_frame(values, version)
    for t in range(1, 40):
        d.poll(t)
    assert d.ready() and d.words[:12] == words and d.version == version
    s = wire.Sample(b"t")
    d.fill(s, 50)
    for k, v in values.items():
        assert s.value[NAMES.index(k)] == v


def _pair(seed=4):
    rec = Recorder()
    m = model_mod.PMS5003(World(T0_S, seed=seed), rec, seed=seed, warmup_s=0)
    link = SerialLink(m)
    d = drv_mod.PMS5003(link, {"warmup_ms": 0})
    d.start(0)
    return m, link, d, rec


def test_model_to_driver_end_to_end():
    m, link, d, rec = _pair()
    for k in range(1, 7):
        s = sample(d, link, k * 10000)
        r = rec.last("pms5003")
        assert r["slot"] == T0_S + k * 10 and r["status"] == "ok" == status_name(s, wire.CH_PM25)
        for name in model_mod.FIELDS:
            assert s.value[NAMES.index(name)] == r[name], name
        idle(d, link, k * 10000 + 1000, (k + 1) * 10000)
    assert m.passive and d.checksum_errors == 0 and d.timeouts == 0


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "garbage", "stuck", "silence",
                                   "slow", "out_of_range"])
def test_each_fault_gives_the_status_ground_truth_expects(fault):
    m, link, d, rec = _pair(seed=9)
    assert status_name(sample(d, link, 10000), wire.CH_PM25) == "ok"
    idle(d, link, 11000, 20000)
    m.faults.inject(fault)
    s = sample(d, link, 20000)
    assert status_name(s, wire.CH_PM25) == STATUS_OF[fault] == rec.last("pms5003")["status"]
    assert m.counters["faults_" + fault] == 1 and rec.last("pms5003")["fault"] == fault
    idle(d, link, 21000, 30000)        # a late answer arrives here: the driver drops it
    s = sample(d, link, 30000)
    r = rec.last("pms5003")
    assert status_name(s, wire.CH_PM10) == "ok" and s.value[wire.CH_PM10] == r["pm10_ugm3"]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.PMS5003(u, {"warmup_ms": 0})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 2000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    assert s.status[wire.CH_PM25] != wire.STATUS_NOT_FITTED
    assert d.bytes_skipped + d.fpos + 32 * d.frames_ok + 8 * d.acks == len(data)
