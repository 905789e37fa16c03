"""The fleet chaos run, short: boxes through the real mosquitto (the shipped configuration, its
default save interval), gateway and InfluxDB while a seeded schedule kills boxes, the gateway, the
broker (also right after a restart, before its first save), InfluxDB, pauses InfluxDB, and cuts
the power of the broker and the gateway together. Every sample a box journaled must be in
InfluxDB once, with the values it journaled (tools/chaos.py; `make chaos` runs the long one)."""

from pathlib import Path

import pytest

from envbox.chaos import KINDS, run_chaos, schedule

pytestmark = pytest.mark.slow


def test_the_schedule_has_every_kind_of_fault_and_a_quiet_end():
    f = schedule(7, boxes=3, minutes=20)
    assert {x.kind for x in f} == set(KINDS)
    assert all(60 <= x.at_s <= (20 - 4) * 60 for x in f)
    assert [x.at_s for x in f] == sorted(x.at_s for x in f)
    assert schedule(7, 3, 20) == f and schedule(8, 3, 20) != f     # seeded


def test_short_chaos_run_loses_nothing(tmp_path: Path):
    rep = run_chaos(tmp_path / "chaos", boxes=2, minutes=14, warp=25, seed=3, quiet=True)
    t = rep.totals()
    print(rep.line())
    assert len(rep.faults) >= len(KINDS)
    assert t["produced"] > 100
    assert rep.ok, rep.line() + "\n" + "\n".join(
        f"{b.device}: missing {b.missing[:5]} extra {b.extra[:5]} {b.mismatched[:3]}"
        for b in rep.boxes)
    assert t["stored"] == t["produced"]
