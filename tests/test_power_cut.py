"""A power cut at the N-th flash write, for many N, on the box as flashed: the MicroPython firmware
on the sim board's emulated flash (state on littlefs, the journal as a ring on the raw partition
of the ESP32 layout, or as littlefs files on the Pico W's), against a real mosquitto.

The sim board cuts the power at the N-th program or erase of the flash (that write lost or torn,
nothing after it) by killing the firmware (boards/simflash.py). What the flash then holds is read
with an independent parser (tools/flashimage.py); the box is started again without a cut and
runs to the end of the patrol. Nothing journaled before the cut may be lost: every such sample
reaches the broker with the same bytes, and the box goes on journaling after it. A cut during
the first boot (littlefs being formatted, state.json written) must leave a box that boots."""

import subprocess

import pytest

from envbox import flashimage
from envbox import mpybuild, servers
from envbox.demo import PM_GNSS_HEAP, start_firmware
from envbox.firmware import wire
from envbox.simulator.run import Simulation
from test_firmware_resilience import DEVICE, Collector, check_stream

pytestmark = pytest.mark.slow

PATROL_MIN = 6
WARP = 90


def _ops(log: str) -> int:
    """The flash operations of the run, from the box's last words."""
    return int(log.rsplit("flash: programmed=", 1)[1].split("ops=")[1].split()[0])


@pytest.mark.parametrize("layout", ["esp32", "pico_w"])
def test_power_cut_at_many_flash_writes_loses_nothing_journaled(tmp_path, layout):
    broker = servers.Mosquitto(tmp_path / "mosquitto").start()
    coll = Collector(broker.port, f"collector-{layout}")
    mpy = mpybuild.build(tmp_path / "mpy")
    procs = []
    flash = tmp_path / "flash"
    env = {"ENVBOX_STATE_DIR": str(flash), "ENVBOX_FLASH": layout}

    def patrol(name, seed, extra=None):
        sim = Simulation(tmp_path / name, device=DEVICE, minutes=PATROL_MIN, warp=WARP,
                         seed=seed)
        sim.start()
        fw = start_firmware(sim.sim_json_path, broker.port, tmp_path / f"{name}.log",
                            PM_GNSS_HEAP, mpy_dir=mpy, extra_env=dict(env, **(extra or {})))
        procs.append(fw)
        try:
            rc = fw.wait(120)
        except subprocess.TimeoutExpired:
            fw.kill()
            rc = None
        sim.stop()
        return rc, (tmp_path / f"{name}.log").read_text(errors="replace")

    try:
        # a first boot on an erased chip (littlefs formatted), then a patrol on the formatted
        # chip: how many flash writes a patrol takes, to spread the cuts over
        rc, log = patrol("first", 1)
        assert rc == 0, log[-3000:]
        rc, log = patrol("second", 2)
        assert rc == 0, log[-3000:]
        total = _ops(log)
        cuts = sorted({1, 2, 3, 5, total // 6, total // 3, total // 2, 2 * total // 3,
                       5 * total // 6, total - 3})
        for k, cut in enumerate(cuts):
            rc, log = patrol(f"cut{cut}", 10 + k, {"ENVBOX_FLASH_CUT_AT": str(cut),
                                                 "ENVBOX_FLASH_TORN": str(k % 3 * 7)})
            assert rc == -9, f"cut {cut} of {total}: exit {rc}, not the power cut\n" + log[-2000:]
            journaled = flashimage.journal(flash, layout)
            # power back, no cut: the box boots on what the flash holds and finishes
            rc, log = patrol(f"after{cut}", 50 + k)
            assert rc == 0, f"cut {cut}: the box did not recover (exit {rc})\n" + log[-3000:]
            servers.eventually(
                lambda: set(journaled) <= {d["seq"] for d in coll.samples}, 20,
                what=f"cut {cut}: every journaled sample at the broker")
            by_seq = check_stream(coll.samples, ordered=False)
            for seq, payload in journaled.items():
                assert by_seq[seq] == wire.decode(payload), f"cut {cut}: seq {seq} differs"
            after = flashimage.journal(flash, layout)
            assert max(after, default=-1) > max(journaled, default=-1), \
                f"cut {cut}: nothing journaled after the power came back"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        coll.stop()
        broker.stop()
