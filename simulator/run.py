"""A simulation run: world, clock, ground truth, serial models on pseudo-terminals and the I2C
bridge, described to the firmware by sim.json in the run directory (docs/contracts.md).

In-process use (tests, demo):

    sim = Simulation(run_dir, device="sj-001", minutes=30, warp=60, seed=1)
    sim.add_serial(SomeModel(sim.world, sim.truth))   # optional, before start()
    sim.add_i2c(0x62, SomeI2CModel(...))               # optional, before or after start()
    sim.start()            # threads run; sim.json and ground_truth.jsonl exist from here on
    ...                    # run the firmware against sim.sim_json_path
    sim.stop()

The PMS5003 and the GNSS receiver are always present (serial names "pms5003", "gnss").
The run keeps serving after run_until_virtual_s; whoever started it stops it.
"""

import json
import math
import os
import time

from .clock import VirtualClock
from .i2c_bridge import I2CBridge
from .. import parts
from .models._common import MODES as FAULT_MODES
from .models.gnss import GNSS
from .models.pms5003 import PMS5003
from .pty import PtyServer
from .truth import GroundTruth
from .world import World, load_world

SIM_JSON = "sim.json"
GROUND_TRUTH = "ground_truth.jsonl"


def default_start_s(minutes, now_s=None):
    """A 10 s-aligned virtual start in the recent past such that the patrol ends about now, so
    databases that refuse future points (or points older than their retention) accept the data."""
    now_s = time.time() if now_s is None else now_s
    return int(math.floor((now_s - minutes * 60.0) / 10.0)) * 10


class Simulation:
    """One run. start_virtual_s: virtual Unix seconds at start() (default: default_start_s).
    pms_faults: {fault: rate per answer} for the PMS5003 (none by default; the model's faults
    can also be set later, sim.pms5003.faults). talker: "GP" or "GN"."""

    def __init__(self, run_dir, device="sj-001", minutes=30.0, warp=60.0, start_virtual_s=None,
                 seed=1, pms_faults=None, talker="GP", gnss_no_fix_s=3, world=None):
        self.run_dir = os.path.abspath(str(run_dir))
        os.makedirs(self.run_dir, exist_ok=True)
        self.device = device
        self.minutes = float(minutes)
        self.warp = float(warp)
        self.seed = seed
        self.start_virtual_s = (default_start_s(self.minutes) if start_virtual_s is None
                                else start_virtual_s)
        self.run_until_virtual_s = self.start_virtual_s + self.minutes * 60.0
        self.sim_json_path = os.path.join(self.run_dir, SIM_JSON)
        self.ground_truth_path = os.path.join(self.run_dir, GROUND_TRUTH)
        self.i2c_socket_path = os.path.join(self.run_dir, "i2c.sock")
        # A new run in an old directory must not mix with the old run's files.
        for stale in (self.sim_json_path, self.ground_truth_path):
            if os.path.exists(stale):
                os.unlink(stale)
        # world: a WorldSpec or a world file (simulator/world.py); None = the default world
        spec = load_world(world) if isinstance(world, (str, os.PathLike)) else world
        self.world = World(self.start_virtual_s, seed, spec)
        self.truth = GroundTruth(self.ground_truth_path)
        self.clock = None
        self.pms5003 = PMS5003(self.world, self.truth, seed=seed)
        for mode, rate in (pms_faults or {}).items():
            self.pms5003.faults.set_rate(mode, rate)
        self.gnss = GNSS(self.world, self.truth, seed=seed, talker=talker, no_fix_s=gnss_no_fix_s)
        self._serial_models = [self.pms5003, self.gnss]
        self.servers = {}
        self._i2c_pending = {}
        self.i2c_names = {}          # 7-bit address -> model name, for sim.json
        self.i2c = None
        self.modem = None            # ModemRig (add_modem)
        self.ntp = None              # SNTPServer (add_ntp)
        self.started = False

    def add_serial(self, model):
        if self.started:
            raise RuntimeError("add serial models before start()")
        if any(m.name == model.name for m in self._serial_models):
            raise ValueError("serial model %r already present" % model.name)
        self._serial_models.append(model)

    def add_modem(self, variant="sim7600", upstream_port=None, cut="blackhole", **kw):
        """Fit an LTE modem (simulator/models/simcom.py on a pty, its pins on a socket, its data
        link as a proxy to 127.0.0.1:upstream_port, the broker). Returns the model; the rig is
        self.modem after start(). kw go to the model (faults, iccid, sim_pin, ...)."""
        from .models.simcom import SIMCom
        if self.started:
            raise RuntimeError("add the modem before start()")
        model = SIMCom(self.world, self.truth, seed=self.seed, variant=variant, **kw)
        self._modem_args = (model, upstream_port, cut)
        return model

    def add_ntp(self):
        """Serve SNTP (virtual time) on a loopback UDP port, written into sim.json "ntp"."""
        self._want_ntp = True

    def add_i2c(self, addr, model):
        self.i2c_names[int(addr)] = model.name
        if self.i2c is not None:
            self.i2c.add(addr, model)
        else:
            self._i2c_pending[addr] = model

    def start(self):
        # Unix socket paths are limited to about 107 bytes; fall back to a short temp path.
        if len(self.i2c_socket_path) > 100:
            import tempfile
            self.i2c_socket_path = os.path.join(tempfile.mkdtemp(prefix="envbox-i2c-"), "i2c.sock")
        # Create the devices first, so the clock starts when everything can answer.
        self.clock = VirtualClock(self.start_virtual_s, self.warp)
        for m in self._serial_models:
            self.servers[m.name] = PtyServer(m, self.clock)
        self.i2c = I2CBridge(self.i2c_socket_path, self.clock)
        for addr, model in self._i2c_pending.items():
            self.i2c.add(addr, model)
        self.i2c.start()
        for srv in self.servers.values():
            # Every module is powered on at the run's virtual start: warm-ups and the GNSS
            # time-to-fix count from there, whatever the threads' start-up jitter.
            srv.start(self.clock.t0_virtual_s)
        if getattr(self, "_modem_args", None):
            from .modem import ModemRig
            model, port, cut = self._modem_args
            self.modem = ModemRig(model, self.clock, self.run_dir,
                                  ("127.0.0.1", port) if port else None, cut)
            self.modem.start(self.clock.t0_virtual_s)
        if getattr(self, "_want_ntp", False):
            from .sntp import SNTPServer
            self.ntp = SNTPServer(self.clock).start()
        self.started = True
        self._write_sim_json()
        return self

    def _write_sim_json(self):
        doc = {
            "t0_wall_s": self.clock.t0_wall_s,
            "t0_virtual_s": self.clock.t0_virtual_s,
            "warp": self.clock.warp,
            "run_until_virtual_s": self.run_until_virtual_s,
            "serial": {name: srv.path for name, srv in self.servers.items()},
            "i2c_socket": self.i2c_socket_path,
            "i2c": {"0x%02x" % a: n for a, n in sorted(self.i2c_names.items())},
            "device": self.device,
            "seed": self.seed,
            "ground_truth": self.ground_truth_path,
        }
        if self.modem is not None:
            doc["modem"] = self.modem.describe()
        if self.ntp is not None:
            doc["ntp"] = "127.0.0.1:%d" % self.ntp.port
        tmp = self.sim_json_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.sim_json_path)   # readers never see a half-written file

    def status(self):
        st = self._status()
        if self.modem is not None:
            st["modem"] = self.modem.status()
        return st

    def _status(self):
        return {"serial": {n: s.status() for n, s in self.servers.items()},
                "i2c": dict(self.i2c.counters) if self.i2c else {},
                "truth": dict(self.truth.counts),
                "virtual_now_s": self.clock.now() if self.clock else None}

    def finished(self):
        return self.clock is not None and self.clock.now() >= self.run_until_virtual_s

    def stop(self):
        for srv in self.servers.values():
            srv.stop()
        if self.i2c is not None:
            self.i2c.stop()
        if self.modem is not None:
            self.modem.stop()
        if self.ntp is not None:
            self.ntp.stop()
        self.truth.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _literal(text):
    for conv in (int, float):
        try:
            return conv(text, 0) if conv is int else conv(text)
        except ValueError:
            pass
    return text


def add_model_spec(sim, spec):
    """Add a model given as a part of the registry (tools/parts.py), e.g. "ze03_no2" or "sht4x"
    (I2C parts at their default address), or as "MODULE.CLASS[:key=value,...]" (module under
    simulator/models), e.g. "ze03.ZE03:gas=no2" or "sht4x.SHT4x:addr=0x44". The class is called
    as CLASS(sim.world, sim.truth, seed=sim.seed, **kwargs); I2C models need addr (7-bit)."""
    import importlib
    from .models import I2CModel
    if spec in parts.PARTS:
        p = parts.PARTS[spec]
        klass = p.model_class()
        kw = p.model_kwargs()
        addr = p.address
    else:
        path, _, kws = spec.partition(":")
        mod, _, cls = path.rpartition(".")
        if not mod or not cls:
            raise ValueError("model spec %r: expected a part (%s) or MODULE.CLASS[:k=v,...]"
                             % (spec, ", ".join(parts.PARTS)))
        kw = {}
        for item in filter(None, kws.split(",")):
            k, eq, v = item.partition("=")
            if not eq:
                raise ValueError("model spec %r: %r is not key=value" % (spec, item))
            kw[k.strip()] = _literal(v.strip())
        addr = kw.pop("addr", None)
        klass = getattr(importlib.import_module("envbox.simulator.models." + mod), cls)
    model = klass(sim.world, sim.truth, seed=sim.seed, **kw)
    if isinstance(model, I2CModel):
        if addr is None:
            raise ValueError("model spec %r: an I2C model needs addr=" % spec)
        sim.add_i2c(int(addr), model)
    else:
        sim.add_serial(model)
    return model


# The parts a box is built with besides the PMS5003 and the GNSS receiver, which every run has
# (names from the registry, firmware/drivers/registry.py). "full" is the default kit of the
# issues: SCD41 (CO2), four ZE03 (O3, NO2, SO2, CO), ZE08-CH2O (HCHO), an RS485 Modbus sound
# level meter and SHT4x (temperature, humidity). "alt" swaps in the alternative parts (SDS011
# beside the PMS5003 is not a kit: both would fill PM2.5/PM10).
KITS = {
    "pm-gnss": [],
    "full": ["scd4x", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise",
             "sht4x"],
    "alt": ["mhz19b", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise",
            "sht3x"],
}


def add_kit(sim, kit):
    for name in KITS[kit]:
        add_model_spec(sim, name)


def main(argv=None):
    import argparse
    import signal
    p = argparse.ArgumentParser(prog="python -m envbox.simulator",
                                description="Simulate an envbox's sensors and world for a firmware "
                                            "process (writes DIR/sim.json and DIR/ground_truth.jsonl).")
    p.add_argument("--dir", required=True, help="run directory")
    p.add_argument("--device", default="sj-001")
    p.add_argument("--minutes", type=float, default=30.0, help="virtual patrol length")
    p.add_argument("--warp", type=float, default=60.0, help="virtual seconds per wall second")
    p.add_argument("--start", type=int, default=None,
                   help="virtual start, Unix seconds (default: so the patrol ends about now)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--world", help="world file (default: simulator/worlds/shuangjing.toml); the "
                                   "box drives its first route")
    p.add_argument("--talker", choices=("GP", "GN"), default="GP")
    p.add_argument("--pms-fault", action="append", default=[], metavar="NAME=RATE",
                   help="PMS5003 fault rate per answer, e.g. bad_checksum=0.05 (names: %s)"
                        % ", ".join(m for m in FAULT_MODES if m != "nack"))
    p.add_argument("--model", action="append", default=[], metavar="PART|MODULE.CLASS[:k=v,...]",
                   help="add a sensor model: a part of the registry, e.g. ze03_no2, or a class "
                        "from simulator/models, e.g. ze03.ZE03:gas=no2 or sht4x.SHT4x:addr=0x44 "
                        "(repeatable)")
    p.add_argument("--kit", choices=sorted(KITS), default="full",
                   help="modules fitted besides the PMS5003 and GNSS (default: full)")
    p.add_argument("--modem", choices=("sim7600", "a7670"), default=None,
                   help="fit an LTE modem (sim.json \"modem\"): its data link proxies to "
                        "--modem-upstream")
    p.add_argument("--modem-upstream", type=int, default=1883, metavar="PORT",
                   help="broker port on 127.0.0.1 the modem's data link reaches (default 1883)")
    p.add_argument("--ntp", action="store_true",
                   help="serve SNTP with the virtual time (sim.json \"ntp\")")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop at run_until_virtual_s instead of serving until interrupted")
    a = p.parse_args(argv)
    faults = {}
    for item in a.pms_fault:
        name, _, rate = item.partition("=")
        if name not in FAULT_MODES or name == "nack":
            p.error("unknown PMS5003 fault %r" % name)
        faults[name] = float(rate)
    try:
        sim = Simulation(a.dir, device=a.device, minutes=a.minutes, warp=a.warp,
                         start_virtual_s=a.start, seed=a.seed, pms_faults=faults,
                         talker=a.talker, world=a.world)
    except ValueError as e:        # WorldError: a bad world file
        p.error(str(e))
    add_kit(sim, a.kit)
    for spec in a.model:
        try:
            add_model_spec(sim, spec)
        except (ValueError, ImportError, AttributeError, TypeError) as e:
            p.error(str(e))
    if a.modem:
        sim.add_modem(a.modem, a.modem_upstream)
    if a.ntp:
        sim.add_ntp()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sim.start()
    print(sim.sim_json_path, flush=True)
    try:
        while not stop and not (a.exit_when_done and sim.finished()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        print(json.dumps(sim.status(), sort_keys=True), flush=True)
    return 0
