"""simulator/models/pms5003.py: the model in isolation (explicit virtual time), and over a real
pseudo-terminal opened in raw mode the way the firmware opens it."""

import json
import os
import select
import time
from pathlib import Path

from hypothesis import given, settings, strategies as st

from envbox.servers import eventually
from envbox.simulator.clock import VirtualClock
from envbox.simulator.models.pms5003 import FIELDS, PMS5003, decode_frame, reading_from_world
from envbox.simulator.pty import PtyServer, open_raw
from envbox.simulator.truth import GroundTruth, read_ground_truth
from envbox.simulator.world import World

VEC = json.loads((Path(__file__).resolve().parent / "vectors" / "pms5003.json").read_text())
CMD = {k: bytes.fromhex(v) for k, v in VEC["commands"].items()}
ACKS = {(v["decoded"]["cmd"], v["decoded"]["data"]): bytes.fromhex(v["hex"])
        for v in VEC["vectors"] if v.get("kind") == "ack"}
T0 = 1_764_300_000.0


def _model(tmp_path, **kw):
    world = World(T0, seed=7)
    truth = GroundTruth(tmp_path / "gt.jsonl")
    m = PMS5003(world, truth, seed=7, **kw)
    m.start(T0)
    return m, world, truth


def _frames(b):
    out = []
    while len(b) >= 32:
        i = b.find(b"\x42\x4d\x00\x1c")
        if i < 0:
            break
        out.append(decode_frame(b[i:i + 32]))
        b = b[i + 32:]
    return out


def test_active_mode_at_power_on_one_frame_per_virtual_second(tmp_path):
    m, _, _ = _model(tmp_path)
    frames = _frames(m.due(T0 + 10.0))
    assert len(frames) == 10
    assert m.next_due() == T0 + 11.0


def test_passive_mode_ack_and_one_frame_per_read(tmp_path):
    m, world, truth = _model(tmp_path)
    m.due(T0 + 0.5)
    m.receive(CMD["passive_mode"], T0 + 0.5)
    assert m.due(T0 + 0.5) == ACKS[(0xE1, 0)]
    assert m.due(T0 + 5.0) == b""           # no active frames any more
    assert m.next_due() is None
    t = T0 + 100.2                           # after warm-up; slot T0+100
    m.receive(CMD["read"], t)
    out = m.due(t)
    assert len(out) == 32
    got = decode_frame(out)
    _, ch = world.channels_at_vehicle(T0 + 100)
    want = reading_from_world(ch)
    assert {k: got[k] for k in FIELDS} == want
    assert want["pm25_ugm3"] > 0
    truth.close()
    rec = read_ground_truth(truth.path, "pms5003")
    assert len(rec) == 1 and rec[0]["slot"] == T0 + 100 and rec[0]["status"] == "ok"
    assert {k: rec[0][k] for k in FIELDS} == want


def test_values_constant_within_a_slot(tmp_path):
    m, _, _ = _model(tmp_path)
    m.receive(CMD["passive_mode"], T0)
    m.due(T0)
    answers = []
    for dt in (195.0, 199.9, 204.9):          # all nearest to slot T0+200
        m.receive(CMD["read"], T0 + dt)
        answers.append(decode_frame(m.due(T0 + dt)))
    m.receive(CMD["read"], T0 + 205.1)        # slot T0+210
    assert answers[0] == answers[1] == answers[2]


def test_warm_up_frames_are_all_zero_then_values(tmp_path):
    m, _, truth = _model(tmp_path)
    m.receive(CMD["passive_mode"], T0)
    m.due(T0)
    m.receive(CMD["read"], T0 + 20)
    warm = decode_frame(m.due(T0 + 20))
    assert all(warm[k] == 0 for k in FIELDS)
    m.receive(CMD["read"], T0 + 30)
    assert decode_frame(m.due(T0 + 30))["n03_per_dl"] > 0
    # sleep, wake: warm-up again for 30 s after the wake
    m.receive(CMD["sleep"], T0 + 40)
    assert m.due(T0 + 40) == ACKS[(0xE4, 0)]
    m.receive(CMD["read"], T0 + 50)
    assert m.due(T0 + 50) == b""              # fan off: no answer
    m.receive(CMD["wake"], T0 + 60)
    m.receive(CMD["read"], T0 + 80)
    assert all(v == 0 for k, v in decode_frame(m.due(T0 + 80)).items() if k in FIELDS)
    m.receive(CMD["read"], T0 + 90)
    assert decode_frame(m.due(T0 + 90))["pm10_ugm3"] > 0
    truth.close()
    st_ = [r["status"] for r in read_ground_truth(truth.path, "pms5003")]
    assert st_ == ["warming_up", "ok", "warming_up", "ok"]
    assert m.counters["reads_ignored"] == 1


def test_faults_and_their_ground_truth(tmp_path):
    m, _, truth = _model(tmp_path)
    m.receive(CMD["passive_mode"], T0)
    m.due(T0)
    t = T0 + 100
    seq = ["bad_checksum", "truncated", "garbage", "silence", "out_of_range", "slow"]
    outs = []
    for i, f in enumerate(seq):
        m.faults.inject(f)
        m.receive(CMD["read"], t + 10 * i)
        outs.append(m.due(t + 10 * i))
    assert len(outs[0]) == 32 and outs[0][31] != (sum(outs[0][:30]) & 0xFF)
    assert len(outs[1]) == 20
    assert len(outs[2]) > 32 and b"\x42" not in outs[2][:-32] and decode_frame(outs[2][-32:])
    assert outs[3] == b""
    assert decode_frame(outs[4])["pm25_ugm3"] > 1000
    assert outs[5] == b"" and len(m.due(t + 50 + 1.9)) == 0
    assert len(m.due(t + 50 + 2.0)) == 32                     # slow: two virtual seconds late
    truth.close()
    recs = read_ground_truth(truth.path, "pms5003")
    assert [(r["fault"], r["status"]) for r in recs] == [
        ("bad_checksum", "checksum_error"), ("truncated", "no_data"), ("garbage", "ok"),
        ("silence", "no_data"), ("out_of_range", "out_of_range"), ("slow", "no_data")]


def test_stuck_repeats_the_last_values(tmp_path):
    m, _, _ = _model(tmp_path)
    m.receive(CMD["passive_mode"], T0)
    m.due(T0)
    vals = []
    for i in range(6):
        if i == 1:
            m.faults.inject("stuck", n=3)
        m.receive(CMD["read"], T0 + 300 + 60 * i)    # a minute apart: the world moves
        vals.append(decode_frame(m.due(T0 + 300 + 60 * i)))
    assert vals[1] == vals[0] and vals[2] == vals[0] and vals[3] == vals[0]
    assert vals[4] != vals[0]


def test_bad_commands_are_counted_not_obeyed(tmp_path):
    m, _, _ = _model(tmp_path)
    bad = bytearray(CMD["passive_mode"])
    bad[-1] ^= 1
    m.receive(b"\x00\x42\x42" + bytes(bad) + b"\x42\x4d\xe7\x00\x00\x01\x76", T0 + 1)
    assert not m.passive
    assert m.counters["command_checksum_errors"] >= 1
    assert m.counters["unknown_commands"] == 1
    # a command split across two writes still works
    m.receive(CMD["passive_mode"][:3], T0 + 2)
    m.receive(CMD["passive_mode"][3:], T0 + 2)
    assert m.passive


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_random_input_never_raises(chunks):
    world = World(T0, seed=1)
    m = PMS5003(world, None)
    m.start(T0)
    t = T0
    for c in chunks:
        t += 0.7
        m.receive(c, t)
        m.due(t)
    assert len(m._rx) <= 6   # the command buffer never grows past one partial command


def _read_exactly(fd, n, timeout_s=5.0):
    buf = b""
    deadline = time.monotonic() + timeout_s
    while len(buf) < n and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            buf += os.read(fd, n - len(buf))
    return buf


def _drain(fd):
    while select.select([fd], [], [], 0)[0]:
        if not os.read(fd, 4096):
            break


def test_over_a_real_pty_passive_reads_like_the_firmware(tmp_path):
    clock = VirtualClock(T0, warp=100.0)
    world = World(T0, seed=3)
    truth = GroundTruth(tmp_path / "gt.jsonl")
    srv = PtyServer(PMS5003(world, truth, seed=3), clock).start()
    try:
        fd = open_raw(srv.path)
        # Active mode streams frames after power-on.
        assert len(_read_exactly(fd, 64)) == 64
        os.write(fd, CMD["passive_mode"])
        # Wait for the ack in the stream (active frames may precede it).
        got = bytearray()

        def ack_seen():
            got.extend(_read_exactly(fd, 8, 0.05))
            return ACKS[(0xE1, 0)] in got
        eventually(ack_seen, timeout=5, what="passive-mode ack")
        _drain(fd)
        slots = []
        for k in range(5, 9):            # grid times after the 30 s warm-up
            grid = T0 + 10 * k
            clock.sleep_until(grid)
            os.write(fd, CMD["read"])
            frame = _read_exactly(fd, 32)
            assert len(frame) == 32
            decode_frame(frame)
            slots.append(grid)
        os.close(fd)
        # A restarted firmware can open the same path again.
        fd = open_raw(srv.path)
        os.write(fd, CMD["read"])
        assert len(_read_exactly(fd, 32)) == 32
        os.close(fd)
        assert srv.counters["model_errors"] == 0
    finally:
        srv.stop()
        truth.close()
    recs = read_ground_truth(truth.path, "pms5003")
    assert [r["slot"] for r in recs[:4]] == slots
    assert all(r["status"] == "ok" for r in recs)
