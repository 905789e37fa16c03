"""`envbox chaos`: a fleet run with every hop killed on a seeded schedule.

Several simulated boxes (the MicroPython firmware on the sim board, each with its own simulator
and flash) publish through the real mosquitto (the shipped configuration: persistence with its
default save interval, logins, ACL) to the real gateway and InfluxDB 1.6.7, while a schedule drawn
from --seed SIGKILLs boxes, the gateway (all its processes), the broker (also soon after a
restart, before its first save), InfluxDB, pauses InfluxDB (SIGSTOP), and cuts the power of the
broker and the gateway together, as a vehicle's ignition does to an in-vehicle Raspberry Pi. Each
killed part comes back after a random while. The last minutes are quiet, so everything can drain.

At the end every box's journal (read from its flash image, independently of the firmware) is
compared with InfluxDB: a sample the box journaled and InfluxDB does not hold is missing; a stored
point the box never journaled is extra; a stored point whose values differ from the journaled
payload is mismatched. Slots of the ground truth the box never sampled (it was dead) are counted
apart. The last line is

    chaos: boxes=K produced=P stored=S missing=M extra=E mismatched=X faults=F

and the command fails unless missing, extra and mismatched are 0.

    envbox chaos [--boxes 4] [--minutes 40] [--warp 25] [--seed 1] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import mpybuild, servers, verify
from .demo import (PM_GNSS_HEAP, gateway_config, start_firmware, start_gateway,
                   wait_gateway_ready)
from .firmware import wire
from .simulator.run import Simulation

QUIET_TAIL_MIN = 4        # no faults in the last minutes: every part drains
KINDS = ("box", "gateway", "broker", "broker_early", "influx_kill", "influx_pause", "power_cut")


@dataclass
class Fault:
    at_s: float            # virtual seconds since the start
    kind: str
    target: int = 0        # the box, for kind "box"
    down_s: float = 10.0   # virtual seconds until it comes back


@dataclass
class BoxResult:
    device: str
    produced: int = 0
    stored: int = 0
    missing: list = field(default_factory=list)
    extra: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    unsampled: int = 0


@dataclass
class ChaosReport:
    boxes: list
    faults: list
    wall_s: float = 0.0

    def totals(self):
        t = {k: 0 for k in ("produced", "stored", "missing", "extra", "mismatched", "unsampled")}
        for b in self.boxes:
            t["produced"] += b.produced
            t["stored"] += b.stored
            t["missing"] += len(b.missing)
            t["extra"] += len(b.extra)
            t["mismatched"] += len(b.mismatched)
            t["unsampled"] += b.unsampled
        return t

    def line(self) -> str:
        t = self.totals()
        return (f"chaos: boxes={len(self.boxes)} produced={t['produced']} stored={t['stored']} "
                f"missing={t['missing']} extra={t['extra']} mismatched={t['mismatched']} "
                f"faults={len(self.faults)}")

    @property
    def ok(self) -> bool:
        t = self.totals()
        return not (t["missing"] or t["extra"] or t["mismatched"])


def schedule(seed: int, boxes: int, minutes: float, n: int | None = None) -> list[Fault]:
    """The faults of a run: every kind at least once, then random ones, ordered in time, between
    the first minute and the quiet tail."""
    rnd = random.Random(seed)
    end = (minutes - QUIET_TAIL_MIN) * 60
    if n is None:
        n = max(len(KINDS), int(minutes * 0.7))
    kinds = list(KINDS) + [rnd.choice(KINDS) for _ in range(n - len(KINDS))]
    rnd.shuffle(kinds)
    out = []
    for k in kinds:
        down = {"box": (5, 90), "gateway": (3, 60), "broker": (3, 60), "broker_early": (3, 30),
                "influx_kill": (5, 120), "influx_pause": (5, 120), "power_cut": (20, 120)}[k]
        out.append(Fault(round(rnd.uniform(60, end), 1), k, rnd.randrange(boxes),
                         round(rnd.uniform(*down), 1)))
    out.sort(key=lambda f: f.at_s)
    return out


def _row_matches(row: dict, d: dict) -> str | None:
    """None if the InfluxDB row holds exactly what the journaled payload says, else why not."""
    if int(row.get("seq", -1)) != d["seq"]:
        return f"seq {row.get('seq')} != {d['seq']}"
    if int(row.get("flags", d["flags"])) != d["flags"]:
        return f"flags {row.get('flags')} != {d['flags']}"
    g = d["gps"]
    if g:
        for k in ("lat_deg", "lon_deg"):
            if abs(float(row.get(k, 1e9)) - g[k]) > 1e-7:
                return f"{k} {row.get(k)} != {g[k]}"
    for name, c in d["channels"].items():
        code = wire.STATUS_NAMES.index(c["status"])
        if int(row.get(name + "_status", -1)) != code:
            return f"{name}_status {row.get(name + '_status')} != {code}"
        if c["value"] is not None and abs(float(row.get(name, 1e18)) - c["value"]) > 1e-6:
            return f"{name} {row.get(name)} != {c['value']}"
    return None


def _journal(flash_dir: Path) -> dict[int, bytes]:
    from .flashimage import journal     # reads the flash image independently of the firmware
    return journal(flash_dir, "esp32")


def run_chaos(workdir: Path, boxes: int = 4, minutes: float = 40, warp: float = 25,
              seed: int = 1, faults: list[Fault] | None = None, quiet: bool = False,
              heap: str = PM_GNSS_HEAP) -> ChaosReport:
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    t_start = time.monotonic()
    faults = schedule(seed, boxes, minutes) if faults is None else faults
    devices = [f"sj-{i + 1:03d}" for i in range(boxes)]
    pw = {d: secrets.token_hex(8) for d in devices}
    gw_pw = secrets.token_hex(8)
    started: list = []
    procs: dict = {}
    every: list = []       # every process started, for the clean-up
    sims: list = []
    try:
        broker = servers.Mosquitto(workdir / "mosquitto",
                                   users=dict(pw, **{servers.GATEWAY_USER: gw_pw})).start()
        started.append(broker)
        db = servers.InfluxDB1(workdir / "influxdb").start()
        started.append(db)
        http_port = servers.free_port()
        # the gateway acknowledges on the product's schedule, in the run's virtual time
        conf = gateway_config(workdir / "gateway.toml", broker.port, workdir / "spool.sqlite3",
                              "influx1", db.url, http_port=http_port,
                              username=servers.GATEWAY_USER, password=gw_pw,
                              ack_max_delay_s=min(160.0 / warp, 1.0))

        def gateway_up():
            p = start_gateway(conf, workdir / "gateway.log")
            procs["gateway"] = p
            every.append(p)
            return p

        wait_gateway_ready(http_port, gateway_up())
        mpy = mpybuild.build(workdir / "mpy")
        for i, dev in enumerate(devices):
            sim = Simulation(workdir / f"sim-{dev}", device=dev, minutes=minutes, warp=warp,
                             seed=seed * 100 + i)
            sim.start()
            sims.append(sim)

        def box_up(i):
            dev = devices[i]
            p = start_firmware(sims[i].sim_json_path, broker.port, workdir / f"{dev}.log", heap,
                               mpy_dir=mpy,
                               extra_env={"ENVBOX_STATE_DIR": str(workdir / f"flash-{dev}"),
                                          "ENVBOX_MQTT_USER": dev,
                                          "ENVBOX_MQTT_PASSWORD": pw[dev]})
            procs[dev] = p
            every.append(p)
            return p

        for i in range(boxes):
            box_up(i)
        say(f"chaos: {boxes} boxes, {minutes:g} virtual minutes at warp {warp:g}, seed {seed}, "
            f"{len(faults)} faults; data in {workdir}")
        clock = sims[0].clock
        t0 = sims[0].start_virtual_s
        now = lambda: clock.now() - t0  # noqa: E731
        pending = list(faults)
        back: list = []        # (virtual time, action)
        done_boxes: set = set()
        log = []
        deadline = time.monotonic() + minutes * 60 / warp * 3 + 180
        while len(done_boxes) < boxes:
            if time.monotonic() > deadline:
                raise RuntimeError("the boxes did not finish; see " + str(workdir))
            v = now()
            while pending and pending[0].at_s <= v:
                f = pending.pop(0)
                log.append((round(v, 1), f.kind, f.target))
                say(f"  {v / 60:5.1f} min: {f.kind}"
                    + (f" {devices[f.target]}" if f.kind == "box" else "")
                    + f" for {f.down_s:g} s")
                if f.kind == "box":
                    p = procs.get(devices[f.target])
                    if p and p.poll() is None and devices[f.target] not in done_boxes:
                        p.kill()
                        p.wait()
                        back.append((v + f.down_s, "box", f.target))
                elif f.kind in ("gateway", "power_cut"):
                    p = procs.get("gateway")
                    if p and p.poll() is None:
                        p.send_signal(signal.SIGKILL)   # the writer process follows (pdeathsig)
                        p.wait()
                    if f.kind == "power_cut" and broker.running():
                        broker.kill()
                    back.append((v + f.down_s, f.kind, 0))
                elif f.kind in ("broker", "broker_early"):
                    if broker.running():
                        broker.kill()
                        back.append((v + f.down_s, f.kind, 0))
                elif f.kind == "influx_kill":
                    if db.running():
                        db.kill()
                        back.append((v + f.down_s, "influx", 0))
                elif f.kind == "influx_pause":
                    if db.running():
                        db.pause()
                        back.append((v + f.down_s, "influx_resume", 0))
            back.sort()
            while back and back[0][0] <= v:
                _, what, i = back.pop(0)
                if what == "box":
                    box_up(i)
                elif what in ("broker", "broker_early", "power_cut"):
                    if not broker.running():
                        broker.start()
                    if what == "broker_early":
                        # killed again before its first save (autosave_interval 30 s of wall
                        # time): whatever it accepted since the restart is gone
                        back.append((v + min(20.0, 10 * warp), "broker_again", 0))
                    if what == "power_cut":
                        g = procs.get("gateway")
                        if g is None or g.poll() is not None:
                            gateway_up()
                elif what == "broker_again":
                    if broker.running():
                        broker.kill()
                        back.append((v + 5, "broker", 0))
                elif what == "gateway":
                    g = procs.get("gateway")
                    if g is None or g.poll() is not None:
                        gateway_up()
                elif what == "influx":
                    if not db.running():
                        db.start()
                elif what == "influx_resume":
                    if db.running():        # (it may have been killed while paused)
                        db.resume()
                back.sort()
            for i, dev in enumerate(devices):
                p = procs.get(dev)
                if dev in done_boxes or p is None or p.poll() is None:
                    continue
                if any(a == "box" and j == i for _, a, j in back):
                    continue        # killed on purpose, coming back
                if p.returncode == 0:
                    done_boxes.add(dev)
                else:
                    # a box that stopped on its own (its watchdog): it restarts, as on a device
                    say(f"  box {dev} exited {p.returncode}: restarted")
                    box_up(i)
            g = procs.get("gateway")
            if g is not None and g.poll() is not None and not any(
                    a in ("gateway", "power_cut") for _, a, _ in back):
                say(f"  the gateway exited {g.returncode}: restarted")
                gateway_up()
            time.sleep(0.1)
        # every box finished (run_until, everything acknowledged or its drain time out);
        # the gateway writes what it holds: wait until InfluxDB stops growing
        boxes_out = []
        want = {}
        for dev in devices:
            want[dev] = {wire.decode(p)["t_utc_s"]: wire.decode(p)
                         for p in _journal(workdir / f"flash-{dev}").values()}
        last, stable = -1, time.monotonic()
        while True:
            n = sum(len(verify.read_influx1(db.url, "envbox", d)) for d in devices)
            if n >= sum(len(w) for w in want.values()):
                break
            if n != last:
                last, stable = n, time.monotonic()
            elif time.monotonic() - stable > 30:
                break
            time.sleep(1)
        for i, dev in enumerate(devices):
            rows = verify.read_influx1(db.url, "envbox", dev)
            exp = verify.expected_from_truth(sims[i].ground_truth_path,
                                             int(sims[i].run_until_virtual_s))
            journaled = want[dev]
            r = BoxResult(dev, produced=len(journaled), stored=len(rows))
            r.missing = sorted(set(journaled) - set(rows))
            r.extra = sorted(set(rows) - set(journaled))
            for t in sorted(set(rows) & set(journaled)):
                why = _row_matches(rows[t], journaled[t])
                if why:
                    r.mismatched.append(f"t={t}: {why}")
            r.unsampled = len(set(exp.slots) - set(journaled))
            boxes_out.append(r)
        rep = ChaosReport(boxes_out, log, time.monotonic() - t_start)
        (workdir / "chaos.json").write_text(json.dumps({
            "faults": log, "boxes": [b.__dict__ for b in boxes_out]}, indent=1))
        return rep
    finally:
        for p in every:
            if p.poll() is None:
                p.kill()
                p.wait()
        for s in sims:
            s.stop()
        for s in started:
            try:
                if s.running():
                    os.kill(s.proc.pid, signal.SIGCONT)
                s.stop()
            except Exception:  # noqa: BLE001 - best effort at the end
                pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="envbox chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--warp", type=float, default=25)
    ap.add_argument("--seed", default="1", help="one seed or several: 1,2,3")
    ap.add_argument("--dir", default="envbox-chaos")
    a = ap.parse_args(argv)
    rc = 0
    for seed in [int(s) for s in a.seed.split(",")]:
        rep = run_chaos(Path(a.dir) / f"seed{seed}", a.boxes, a.minutes, a.warp, seed)
        t = rep.totals()
        for b in rep.boxes:
            print(f"  {b.device}: produced {b.produced} stored {b.stored} missing "
                  f"{len(b.missing)} extra {len(b.extra)} mismatched {len(b.mismatched)} "
                  f"not sampled (box down) {b.unsampled}"
                  + (f"; first missing t={b.missing[:3]}" if b.missing else "")
                  + (f"; {b.mismatched[0]}" if b.mismatched else ""))
        print(f"seed {seed}: {rep.wall_s:.0f} s wall, {t['unsampled']} slots not sampled")
        print(rep.line())
        rc |= 0 if rep.ok else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
