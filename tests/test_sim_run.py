"""simulator/run.py: a whole Simulation at high warp, driven the way the firmware drives it, and
the `python -m envbox.simulator` command."""

import json
import os
import select
import subprocess
import sys
import threading
import time

from envbox.servers import eventually
from envbox.simulator.clock import VirtualClock
from envbox.simulator.models.pms5003 import decode_frame
from envbox.simulator.pty import open_raw
from envbox.simulator.run import Simulation, default_start_s
from envbox.simulator.truth import read_ground_truth

PASSIVE = bytes.fromhex("424de100000170")
READ = bytes.fromhex("424de200000171")


def _read_n(fd, n, timeout_s=5.0):
    buf = b""
    deadline = time.monotonic() + timeout_s
    while len(buf) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            buf += os.read(fd, n - len(buf))
    return buf


def test_simulation_serves_pms_reads_and_gnss_with_ground_truth(tmp_path):
    start = 1_764_300_000
    sim = Simulation(tmp_path / "run", device="sj-042", minutes=2, warp=120, start_virtual_s=start,
                     seed=9)
    sim.start()
    try:
        doc = json.loads(open(sim.sim_json_path).read())
        assert doc["device"] == "sj-042" and doc["warp"] == 120.0
        assert doc["t0_virtual_s"] == start and doc["run_until_virtual_s"] == start + 120
        assert set(doc["serial"]) == {"pms5003", "gnss"} and os.path.exists(doc["i2c_socket"])
        # The firmware's view of time, from sim.json alone.
        clock = VirtualClock(doc["t0_virtual_s"], doc["warp"], doc["t0_wall_s"])

        gnss_fd = open_raw(doc["serial"]["gnss"])
        nmea = bytearray()
        stop = threading.Event()

        def read_gnss():
            while not stop.is_set():
                if select.select([gnss_fd], [], [], 0.05)[0]:
                    nmea.extend(os.read(gnss_fd, 4096))
        reader = threading.Thread(target=read_gnss, daemon=True)
        reader.start()

        fd = open_raw(doc["serial"]["pms5003"])
        os.write(fd, PASSIVE)
        got = bytearray()

        def acked():
            got.extend(_read_n(fd, 64, 0.05))
            return b"\x42\x4d\x00\x04\xe1\x00\x01\x74" in got
        eventually(acked, timeout=5, what="passive-mode ack")
        clock.sleep_until(start + 20)
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 4096)                 # flush, as the firmware does
        slots = []
        for g in range(start + 30, start + 121, 10):
            clock.sleep_until(g)
            os.write(fd, READ)
            frame = _read_n(fd, 32)
            assert len(frame) == 32
            decode_frame(frame)
            slots.append(g)
        os.close(fd)
        stop.set()
        reader.join()
        os.close(gnss_fd)
        status = sim.status()
    finally:
        sim.stop()
    pms = read_ground_truth(sim.ground_truth_path, "pms5003")
    assert [r["slot"] for r in pms] == slots                  # one answer per request slot
    assert [r["status"] for r in pms] == ["ok"] * len(slots)   # warm-up over at +30 s
    gnss = read_ground_truth(sim.ground_truth_path, "gnss")
    ts = [r["t"] for r in gnss]
    assert ts == list(range(start, start + len(ts))) and len(ts) >= 120
    text = nmea.decode("ascii")
    for r in gnss[5:100]:
        assert r["rmc"] + "\r\n" + r["gga"] + "\r\n" in text   # what was sent is what is recorded
    assert status["serial"]["pms5003"]["model_errors"] == 0
    assert status["serial"]["pms5003"]["model"]["reads_answered"] == len(slots)


def test_default_start_ends_the_patrol_about_now():
    now = 1_764_300_007.3
    s = default_start_s(30, now)
    assert s % 10 == 0 and now - 1800 - 10 < s <= now - 1800


def test_cli_writes_sim_json_and_exits_when_done(tmp_path):
    d = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "envbox.simulator", "--dir", str(d), "--device",
                        "sj-001", "--minutes", "1", "--warp", "600", "--seed", "3",
                        "--pms-fault", "bad_checksum=0.5", "--kit", "pm-gnss",
                        "--model", "sds011.SDS011",
                        "--exit-when-done"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    doc = json.loads((d / "sim.json").read_text())
    assert doc["run_until_virtual_s"] - doc["t0_virtual_s"] == 60
    assert set(doc["serial"]) == {"pms5003", "gnss", "sds011"}
    assert doc["t0_virtual_s"] <= time.time() - 60 + 1
    status = json.loads(r.stdout.strip().splitlines()[-1])
    assert status["truth"]["gnss"] >= 60
    assert status["serial"]["pms5003"]["model"]["frames_sent"] >= 55   # active mode, nobody asked


def test_model_spec_errors_are_reported(tmp_path):
    r = subprocess.run([sys.executable, "-m", "envbox.simulator", "--dir", str(tmp_path),
                        "--model", "nosuchmodule.X", "--exit-when-done"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "nosuchmodule" in r.stderr
