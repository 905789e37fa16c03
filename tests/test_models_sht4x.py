"""SHT4x and SHT3x simulator models against the golden vectors and against the firmware drivers."""

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.firmware.drivers import sht3x as drv3
from envbox.firmware.drivers import sht4x as drv4
from envbox.simulator.models import sht3x as m3
from envbox.simulator.models import sht4x as m4

from drivers_link import I2CLink, Recorder, sample, status_name, vectors

V4 = vectors("sht4x")
V3 = vectors("sht3x")
PARTS = [(m4.SHT4x, drv4.SHT4x, V4, "measure_high_precision"),
         (m3.SHT3x, drv3.SHT3x, V3, "measure_single_shot_high")]


def words(h):
    b = bytes.fromhex(h)
    return (b[0] << 8) | b[1], (b[3] << 8) | b[4]


def test_models_reproduce_vectors():
    for v in V4["vectors"]:
        if v["ok"]:
            assert m4.reply(*words(v["hex"])).hex() == v["hex"]
            d = v["decoded"]
            assert m4.reply(m4.t_word(d["temp_c"]), m4.rh_word_sht4x(d["rh_pct"])).hex() == v["hex"]
    for v in V3["vectors"]:
        if v["ok"]:
            d = v["decoded"]
            assert m3.reply(m4.t_word(d["temp_c"]), m3.rh_word_sht3x(d["rh_pct"])).hex() == v["hex"]


@pytest.mark.parametrize("model_cls,drv_cls,V,cmd", PARTS)
def test_model_answers_the_measure_command_and_nacks_early_reads(model_cls, drv_cls, V, cmd):
    d = V["vectors"][0]["decoded"]
    m = model_cls(values={"temp_c": d["temp_c"], "rh_pct": d["rh_pct"]})
    assert m.write(bytes.fromhex(V["commands"][cmd]), 100.0)
    assert m.read(6, 100.001) is None                  # still converting
    assert m.read(6, 100.02).hex() == V["vectors"][0]["hex"]
    assert m.read(6, 100.03) is None                   # read once
    assert not m.write(b"\x00\x00", 101.0) if model_cls is m3.SHT3x else not m.write(b"\x00", 101.0)


@pytest.mark.parametrize("model_cls,drv_cls,V,cmd", PARTS)
@settings(max_examples=150, deadline=None)
@given(temp=st.floats(-40, 125), rh=st.floats(0, 100))
def test_model_to_driver_end_to_end(model_cls, drv_cls, V, cmd, temp, rh):
    rec = Recorder()
    m = model_cls(values={"temp_c": temp, "rh_pct": rh}, truth=rec)
    link = I2CLink({0x44: m})
    d = drv_cls(link, {})
    d.start(0)
    s = sample(d, link, 10000, step_ms=1)
    r = rec.last(m.name)
    assert status_name(s, wire.CH_TEMP) in ("ok", "out_of_range")
    assert s.value[wire.CH_TEMP] == round(-4500 + 17500 * r["t_raw"] / 65535 + 1e-9)
    assert abs(s.value[wire.CH_TEMP] / 100 - temp) <= 0.01
    assert abs(s.value[wire.CH_RH] / 100 - rh) <= 0.01
    assert abs(s.value[wire.CH_RH] / 100 - r["rh_pct"]) <= 0.005 + 1e-9


@pytest.mark.parametrize("model_cls,drv_cls,V,cmd", PARTS)
@pytest.mark.parametrize("fault,want", [("nack", "no_data"), ("silence", "no_data"),
                                        ("bad_checksum", "checksum_error"),
                                        ("truncated", "checksum_error"), ("slow", "no_data"),
                                        ("out_of_range", "out_of_range"), ("garbage", "ok")])
def test_faults(model_cls, drv_cls, V, cmd, fault, want):
    rec = Recorder()
    m = model_cls(values={"temp_c": 21.0, "rh_pct": 55.0}, truth=rec)
    link = I2CLink({0x44: m})
    d = drv_cls(link, {})
    d.start(0)
    assert status_name(sample(d, link, 10000, step_ms=1), wire.CH_TEMP) == "ok"
    m.faults.inject(fault)
    s = sample(d, link, 20000, step_ms=1)
    assert status_name(s, wire.CH_TEMP) == want
    if fault not in ("nack", "silence"):
        assert rec.last(m.name)["status"] == want
    s = sample(d, link, 30000, step_ms=1)
    assert status_name(s, wire.CH_TEMP) == "ok" and s.value[wire.CH_TEMP] == 2100


@pytest.mark.parametrize("drv_cls", [drv4.SHT4x, drv3.SHT3x])
@settings(max_examples=200, deadline=None)
@given(reply=st.binary(min_size=6, max_size=6), delay=st.integers(0, 200))
def test_random_replies_never_raise(drv_cls, reply, delay):
    class Dev:
        def write(self, data, t):
            self.t = t
            return True

        def read(self, n, t):
            return reply if (t - self.t) * 1000 >= delay else None

    link = I2CLink({0x44: Dev()})
    d = drv_cls(link, {})
    s = sample(d, link, 0, step_ms=1)
    assert s.status[wire.CH_TEMP] in (wire.STATUS_OK, wire.STATUS_OUT_OF_RANGE,
                                      wire.STATUS_CHECKSUM_ERROR, wire.STATUS_NO_DATA)
