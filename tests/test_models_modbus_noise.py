"""Modbus noise meter model against the golden vectors and against the firmware driver,
including LAeq against the float formula over the model's ground truth."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import modbus_noise as drv_mod
from envbox.simulator.models import modbus_noise as model_mod
from envbox.simulator.models._common import STATUS_OF

from drivers_link import BufUART, Recorder, SerialLink, T0_S, idle, sample, status_name, vectors

V = vectors("modbus")
CH = wire.CH_NOISE


def test_model_reproduces_vector_frames():
    for r in V["requests"]:
        assert model_mod.request_frame(r["address"], r["function"], r["register"], r["count"]).hex() == r["hex"]
    for v in V["vectors"]:
        if not v["ok"]:
            continue
        d = v["decoded"]
        if v.get("kind") == "exception":
            f = model_mod.exception_frame(d["address"], d["function"], d["exception"])
        else:
            f = model_mod.reply_frame(d["address"], d["function"], [d["raw"]])
        assert f.hex() == v["hex"], v["name"]


def test_model_answers_like_a_slave():
    m = model_mod.ModbusNoise(values={"noise_dba": 61.0}, sigma_db=0)
    m.receive(bytes.fromhex(V["requests"][0]["hex"]), 1.0)
    assert m.due(1.1).hex() == V["vectors"][0]["hex"]                      # 61.0 dB
    m.receive(bytes.fromhex(V["requests"][1]["hex"]), 2.0)                 # function 04
    assert m.due(2.1) == model_mod.exception_frame(1, 4, 1)
    m.receive(model_mod.request_frame(1, 3, 5), 3.0)                       # bad register
    assert m.due(3.1).hex() == model_mod.exception_frame(1, 3, 2).hex()
    m.receive(bytes.fromhex(V["requests"][2]["hex"]), 4.0)                 # other address
    bad = bytearray.fromhex(V["requests"][0]["hex"])
    bad[7] ^= 1
    m.receive(bytes(bad), 5.0)                                             # bad CRC
    assert m.due(6.0) == b""


@settings(max_examples=300, deadline=None)
@given(raw=st.integers(0, 0xFFFF), addr=st.integers(1, 247), func=st.sampled_from([3, 4]),
       chunk=st.integers(1, 9))
def test_encode_decode_identity(raw, addr, func, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.ModbusNoise(u, {"address": addr, "function": func, "max_dba": 10000})
    d.start(0)
    d.request(0)
    u.data += model_mod.reply_frame(addr, func, [raw])
    for t in range(1, 12):
        d.poll(t)
    assert d.ready() and d.raw == raw
    s = wire.Sample(b"t")
    d.fill(s, 20)
    for ch in (wire.CH_NOISE, wire.CH_NOISE_LMIN, wire.CH_NOISE_LMAX):
        assert s.value[ch] == raw            # one poll: LAeq = Lmin = Lmax = raw/10 dB = raw deci-dB


@settings(max_examples=40, deadline=None)
@given(level=st.floats(35, 110), sigma=st.floats(0, 8), seed=st.integers(0, 1000))
def test_laeq_matches_float_formula_over_ground_truth(level, sigma, seed):
    rec = Recorder()
    m = model_mod.ModbusNoise(values={"noise_dba": level}, sigma_db=sigma, truth=rec, seed=seed)
    link = SerialLink(m)
    d = drv_mod.ModbusNoise(link, {"poll_ms": 1000})
    d.start(0)
    prev = 0
    for k in range(1, 4):
        idle(d, link, prev, k * 10000)
        s = sample(d, link, k * 10000)
        # the window is closed at the request (the sample time), not when fill() runs
        tf = T0_S + k * 10
        win = [r["raw"] for r in rec.records
               if T0_S + prev / 1000 < r["t_virtual"] + model_mod.RESPONSE_S <= tf]
        prev = k * 10000
        if k == 1:
            continue                         # the first window starts mid-way
        assert 9 <= len(win) <= 11
        laeq = 10 * math.log10(sum(10 ** (x / 100) for x in win) / len(win))
        assert status_name(s, CH) in ("ok", "out_of_range")
        assert abs(s.value[CH] - laeq * 10) <= 0.5 + 1e-6
        assert s.value[wire.CH_NOISE_LMIN] == min(win)
        assert s.value[wire.CH_NOISE_LMAX] == max(win)


@pytest.mark.parametrize("fault", ["bad_checksum", "truncated", "silence", "slow", "out_of_range", "garbage"])
def test_faults_in_every_poll_of_a_window(fault):
    rec = Recorder()
    m = model_mod.ModbusNoise(values={"noise_dba": 60.0}, sigma_db=0, truth=rec)
    link = SerialLink(m)
    d = drv_mod.ModbusNoise(link, {"poll_ms": 1000})
    d.start(0)
    idle(d, link, 0, 10000)
    assert status_name(sample(d, link, 10000), CH) == "ok"
    m.faults.set(fault)
    # a window is closed at each sample time: the one after the fault began is entirely faulty
    # (an answer to a query sent before the fault may still land in the window that is open)
    idle(d, link, link.t_ms, 20000)
    sample(d, link, 20000)
    idle(d, link, link.t_ms, 30000)
    s = sample(d, link, 30000)
    if fault == "slow":
        # Modbus replies carry no transaction id: a reply 2 s late is still a level of this
        # register and is used; the late queries show up as timeouts.
        assert status_name(s, CH) == "ok" and d.timeouts >= 2
    else:
        assert status_name(s, CH) == STATUS_OF[fault]
    m.faults.clear()
    idle(d, link, link.t_ms, 40000)
    sample(d, link, 40000)
    idle(d, link, link.t_ms, 50000)
    s = sample(d, link, 50000)
    assert status_name(s, CH) == "ok" and s.value[CH] == 600


def test_an_exception_reply_is_sensor_error():
    m = model_mod.ModbusNoise(values={"noise_dba": 60.0}, register=0x0E)   # GEMHO-style register
    link = SerialLink(m)
    d = drv_mod.ModbusNoise(link, {})
    d.start(0)
    s = sample(d, link, 10000)
    assert status_name(s, CH) == "sensor_error" and d.exception_code == 2
    d = drv_mod.ModbusNoise(link, {"register": 0x0E})
    d.start(20000)
    s = sample(d, link, 20000)
    assert status_name(s, CH) == "ok"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 40))
def test_random_bytes_never_raise(data, chunk):
    u = BufUART(chunk=chunk)
    d = drv_mod.ModbusNoise(u, {})
    d.start(0)
    d.request(0)
    u.data += data
    for t in range(0, 3000, 100):
        d.poll(t)
    s = wire.Sample(b"t")
    d.fill(s, 3000)
    assert s.status[CH] != wire.STATUS_NOT_FITTED


def test_integer_log_domain_average_accuracy():
    import random
    r = random.Random(4)
    worst = 0.0
    for n in (1, 2, 10, 60, 600, 3000):
        levels = [round(r.gauss(65, 10) * 10) for _ in range(n)]
        s = levels[0] * 1000
        for x in levels[1:]:
            s = drv_mod.logadd_e4(s, x * 1000)
        got = (s - drv_mod.log_n_e4(n)) / 10000
        ref = 10 * math.log10(sum(10 ** (x / 100) for x in levels) / n)
        worst = max(worst, abs(got - ref))
    assert worst < 0.01
