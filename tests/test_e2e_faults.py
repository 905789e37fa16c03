"""Sensor faults, end to end: modules answer with bad checksums, truncated frames, silence, late
answers, garbage between frames and out-of-range values; every failure must reach the database
as a status with no value (never a number), exactly as the ground truth says, and every good
answer as its value."""

import pytest

from envbox.demo import run_patrol

pytestmark = pytest.mark.slow

# The noise meter's own faults are tested in tests/test_models_modbus_noise.py: which of its
# polls fall in a window around a failed one depends on host timing at warp, too loosely for an
# exact end-to-end check.
RATES = {  # model name -> {fault: probability per answer, or (probability, parameter)}
    # the PMS5003's late answers come 7 s late: after the sim board's answer window at warp 30
    "pms5003": {"bad_checksum": 0.06, "truncated": 0.05, "silence": 0.05, "slow": (0.05, 7.0),
                "garbage": 0.1, "out_of_range": 0.05},
    "ze03_no2": {"bad_checksum": 0.1, "silence": 0.08, "out_of_range": 0.05, "garbage": 0.1},
    "ze03_co": {"truncated": 0.1},
    "ze08": {"bad_checksum": 0.1, "truncated": 0.05},
}
I2C_RATES = {
    "scd4x": {"bad_checksum": 0.1},
    "sht4x": {"bad_checksum": 0.1},
}


def inject(sim):
    for m in sim._serial_models:
        for mode, p in RATES.get(m.name, {}).items():
            m.faults.set_rate(mode, *(p if isinstance(p, tuple) else (p,)))
    for m in sim._i2c_pending.values():
        for mode, p in I2C_RATES.get(m.name, {}).items():
            m.faults.set_rate(mode, p)


def test_every_fault_reaches_the_database_as_a_status(tmp_path):
    rep, rows = run_patrol(tmp_path, minutes=20, warp=30, sink="influx1", seed=3, quiet=True,
                           sim_setup=inject)
    assert not rep.missing and not rep.extra, rep.summary_line()
    assert not rep.mismatches, "\n".join(rep.mismatches[:20])

    def statuses(name):
        return [int(r[name + "_status"]) for r in rows.values() if name + "_status" in r]

    # each kind of failure really happened and is stored as its status, with no value beside it
    for name, codes in (("pm25_ugm3", {2, 3, 4}), ("no2_ppb", {2, 3, 4}), ("co_ppm", {2}),
                        ("hcho_ppb", {2, 3}), ("co2_ppm", {3}), ("temp_c", {3})):
        seen = set(statuses(name))
        assert codes <= seen, f"{name}: statuses seen {sorted(seen)}, expected {sorted(codes)}"
        for r in rows.values():
            if r.get(name + "_status") in (1, 2, 3, 6):
                assert name not in r, f"{name}: a value stored beside a failure status: {r}"
