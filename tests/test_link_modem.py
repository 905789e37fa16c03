"""The LTE board's link (firmware/linkcell.py + firmware/drivers/simcom.py, as boards/esp32_lte.py
builds them) under the MicroPython Unix port, against the simulator's SIMCom model on a pty with
its pins on a socket, and its data link to a real mosquitto (simulator/modem.py).

Each test starts a simulation with a modem, runs tests/firmware/linkrun.py (the `sim` board, its
CellLink, and a small MQTT uplink through the modem's data link), breaks the modem or the network
the way the field does, and reads what the supervisor reported: its status lines and the model's
counters (what the box really did on the UART and the pins)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from envbox import servers
from stubsig import check_call
from envbox.simulator.run import Simulation
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
SCRIPT = ROOT / "tests" / "firmware" / "linkrun.py"
MP = os.path.join(os.path.dirname(sys.executable), "micropython")
WARP = 60


@pytest.fixture
def broker(tmp_path):
    b = servers.Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


class Run:
    def __init__(self, tmp_path, broker, variant="sim7600", cut="blackhole", **faults):
        self.sim = Simulation(tmp_path / "sim", minutes=120, warp=WARP, seed=5)
        self.model = self.sim.add_modem(variant, upstream_port=broker.port, cut=cut)
        for k, v in faults.items():
            setattr(self.model, k, v)
        self.sim.start()
        self.rig = self.sim.modem
        self.procs = []

    def t(self):
        """Virtual seconds since the start."""
        return self.sim.clock.now() - self.sim.start_virtual_s

    def at(self, t_s):
        """Virtual Unix time of run second t_s (for the model's fault fields)."""
        return self.sim.start_virtual_s + t_s

    def firmware(self, until_s, fail_at_s=-1):
        env = dict(os.environ, MICROPYPATH=f"{MPSRC}:.frozen",
                   ENVBOX_STATE_DIR=str(self.sim.run_dir) + "/flash")
        p = subprocess.Popen([MP, "-X", "heapsize=256k", str(SCRIPT), self.sim.sim_json_path,
                              str(until_s), str(fail_at_s)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        return p

    def finish(self, p, timeout=300):
        out, _ = p.communicate(timeout=timeout)
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        assert p.returncode == 0 and lines and "summary" in lines[-1], out[-4000:]
        return lines[:-1], lines[-1]["summary"], out

    def wait(self, t_s):
        servers.eventually(lambda: self.t() >= t_s, timeout=t_s / WARP + 60,
                           what=f"virtual second {t_s}")

    def counters(self):
        with self.rig.lock:
            return dict(self.model.counters)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.sim.stop()


@pytest.fixture
def run(tmp_path, broker):
    made = []

    def make(**kw):
        r = Run(tmp_path, broker, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def check_calls(summary, expect):
    """Every call the link made on the PPP and pin stand-ins (boards/simmodem.py) binds against
    the esp32 port's stubs of network.PPP and machine.Pin."""
    assert {c[0] for c in summary["calls"]} >= expect
    for name, nargs, kws in summary["calls"]:
        module = "machine" if name.startswith("Pin") else "network"
        check_call("esp32", module, name, [0] * nargs, {k: 0 for k in kws})


def errors(lines):
    """The link's last_error values in the order they appeared (each once per change)."""
    out = []
    for ln in lines:
        e = ln["last_error"]
        if e and (not out or out[-1] != e):
            out.append(e)
    return out


def test_cold_modem_powers_on_registers_dials_and_carries_mqtt(run):
    r = run()
    lines, s, out = r.finish(r.firmware(300))
    assert s["state"] == "up" and s["ups"] == 1 and s["drops"] == 0, out[-3000:]
    assert s["sim"] == "ready" and s["registration"] == "home"
    assert s["iccid"] == r.model.iccid and s["csq"] == r.model.csq_code
    assert s["rssi_dbm"] == -113 + 2 * r.model.csq_code
    c = r.counters()
    assert c["power_ons"] == 1 and c["calls"] == 1 and c["ppp_sessions"] == 1
    # the box's MQTT reached the real broker through the modem's data link: PUBACKs came back
    up = s["uplink"]
    assert up["sessions"] == 1 and up["pubacks"] >= 10 and up["mqtt_errors"] == 0, up
    assert r.rig.counters["accepted"] == 1 and r.rig.counters["bytes_down"] > 0
    # network time from AT+CCLK? (NITZ), as (t_s2020, tick)
    check_calls(s, {"PPP", "PPP.connect", "PPP.isconnected", "Pin.value"})
    t, tick = s["time"]
    virtual_now_2020 = r.sim.clock.now() - 1577836800
    assert abs((t + s["time_age_ms"] / 1000) - virtual_now_2020) < 30


def test_modem_left_in_data_mode_by_a_box_reset_is_escaped(run):
    r = run()
    p = r.firmware(100000)
    servers.eventually(lambda: r.model.passing(), timeout=60, what="link up")
    p.send_signal(signal.SIGKILL)          # the box resets; the modem stays in PPP data mode
    p.wait()
    assert r.model.mode == "data" and r.model.call
    start = r.t()
    lines, s, out = r.finish(r.firmware(int(start) + 240))
    assert s["state"] == "up" and s["escapes"] == 1 and s["power_cycles"] == 0, out[-3000:]
    c = r.counters()
    # '+++' with its guard times, then ATH, then dialled again; the modem was never powered off
    assert c["escapes"] == 1 and c["hangups"] >= 1 and c["calls"] == 2 and c["power_ons"] == 1
    assert s["uplink"]["pubacks"] >= 5


def test_sim_missing_then_inserted(run):
    r = run(sim_inserted=False)
    p = r.firmware(1500)
    r.wait(600)
    with r.rig.lock:
        r.model.sim_inserted = True        # seen by the modem at its next start
    lines, s, out = r.finish(p)
    assert errors(lines)[:1] == ["sim: not inserted"], out[-3000:]
    assert s["state"] == "up" and s["sim"] == "ready" and s["power_cycles"] >= 1
    # the link came up only after the insertion, through a modem restart
    first_up = next(ln for ln in lines if ln["state"] == "up")
    assert first_up["t_s"] >= 600
    assert s["uplink"]["pubacks"] >= 1


def test_no_registration_for_five_minutes(run):
    r = run()
    r.model.no_service_until = r.at(300)
    lines, s, out = r.finish(r.firmware(700))
    assert [e for e in errors(lines) if e.startswith("registration: searching")], out[-3000:]
    first_up = next(ln for ln in lines if ln["state"] == "up")
    assert first_up["t_s"] >= 300
    assert s["state"] == "up" and s["registration"] == "home"


def test_carrier_drops_are_noticed_by_the_supervisor_not_by_mqtt(run):
    # every 2 virtual minutes of a call the network drops it; 20 s without service after
    r = run(carrier_drop_every_s=120, outage_s=20)
    lines, s, out = r.finish(r.firmware(900))
    c = r.counters()
    assert c["carrier_drops"] >= 4, (c, out[-3000:])
    assert s["drops"] >= c["carrier_drops"] - 1 and s["ups"] >= c["carrier_drops"]
    reasons = errors(lines)
    assert reasons and all(x.startswith("no carrier") for x in reasons), reasons
    up = s["uplink"]
    # blackhole cut: the sockets stayed open and silent; each session ended because the link
    # supervisor cleared link.up, never by an MQTT error
    assert up["mqtt_errors"] == 0 and up["closed_by_link"] >= c["carrier_drops"] - 1, up
    assert r.rig.counters["cut"] >= c["carrier_drops"] - 1


def test_wedged_modem_is_power_cycled(run):
    r = run()
    p = r.firmware(100000)
    servers.eventually(lambda: r.model.passing(), timeout=60, what="link up")
    p.send_signal(signal.SIGKILL)
    p.wait()
    with r.rig.lock:
        r.model.hung = True                # firmware wedged: answers nothing, not even +++
    lines, s, out = r.finish(r.firmware(int(r.t()) + 400))
    assert s["state"] == "up" and s["power_cycles"] >= 1, out[-3000:]
    c = r.counters()
    assert c["power_offs"] >= 1 and c["boots"] >= 2


def test_slow_boot_is_waited_for_not_power_cycled(run):
    r = run(boot_s=45.0)     # longer than one boot wait; STATUS is high all along
    lines, s, out = r.finish(r.firmware(300))
    assert s["state"] == "up" and s["power_cycles"] == 0, out[-3000:]
    assert r.counters()["boots"] == 1 and r.counters()["power_ons"] == 1


def test_broker_failures_recycle_the_link(run):
    r = run()
    lines, s, out = r.finish(r.firmware(400, fail_at_s=200))
    assert [x for x in errors(lines) if x.startswith("broker unreachable")], out[-3000:]
    assert s["state"] == "up" and s["ups"] == 2 and s["recycles"] == 1
    check_calls(s, {"PPP.disconnect", "PPP.active"})
    c = r.counters()
    assert c["calls"] == 2      # PPP terminated, call ended, dialled again


def test_a7670_board_powers_through_poweron_and_pwrkey(run):
    r = run(variant="a7670")
    lines, s, out = r.finish(r.firmware(200))
    assert s["state"] == "up" and s["variant"] == "a7670", out[-3000:]
    assert r.model.pin_in["POWERON"] == 1 and r.counters()["power_ons"] == 1
    assert s["uplink"]["pubacks"] >= 1
