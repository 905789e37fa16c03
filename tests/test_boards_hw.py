"""The hardware boards (boards/esp32_lte.py, boards/pico_w.py) and their bus classes
(boards/buses.py) without hardware.

A fake `machine` module stands in for the microcontroller; behind its UART/I2C/Pin objects sits
a small hardware simulation: the analog multiplexer follows the select pins (Pico W: GPIOs; ESP32:
the SC16IS752's IO0..IO2), an SC16IS752 emulated at register level (divisor, FIFOs, RXLVL/TXLVL,
RS-485 EFCR, GPIOs) and, at the ends of the wires, the simulator's own module models
(simulator/models/*) on an explicit virtual clock. The real drivers then sample through the
board's buses as the firmware's sampler does; values are compared with the models' ground truth.
A module wired to the wrong channel answers with the wrong gas code and shows up as a
sensor_error, a wrong baud rate as no_data.

The same files are also imported and constructed under the MicroPython Unix port with a tiny
fake `machine` (last test), which checks they are MicroPython code and that nothing at import
time needs hardware."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from drivers_link import T0_S, I2CLink, Recorder, SerialLink
from stubsig import StubMismatch, strict_module
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards

WIRE_BAUD_UNSET = 0


# -- the hardware simulation ----------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t_ms = 0
        self.links = []

    def set(self, t_ms):
        self.t_ms = t_ms
        for link in self.links:
            link.t_ms = t_ms

    def __call__(self):
        return self.t_ms & ((1 << 30) - 1)


class Wire:
    """A UART line to one module at a fixed baud rate: bytes sent at another rate are lost (the
    module sees framing garbage) and its answers are unreadable."""

    def __init__(self, link, baud):
        self.link = link
        self.baud = baud

    def drain(self):
        self.link._pull()
        out = bytes(self.link.rx)
        self.link.rx.clear()
        return out


class AnalogMux:
    """Two 74HC4051 with common select lines: the common TX/RX connect to the selected wire;
    what an unselected module sends is lost."""

    def __init__(self, wires, select):
        self.wires = wires          # channel -> Wire
        self.select = select        # () -> channel
        self.lost = 0

    def exchange(self, baud, tx=b""):
        """Deliver tx to the selected module; return what arrived from it. Bytes from the other
        modules are dropped (they were never connected)."""
        ch = self.select()
        got = b""
        for c, w in self.wires.items():
            data = w.drain()
            if c == ch:
                got = data if w.baud == baud else b""
            else:
                self.lost += len(data)
        w = self.wires.get(ch)
        if tx and w is not None and w.baud == baud:
            w.link.write(tx)
        return got


class MuxedUART:
    """The microcontroller's UART whose line goes through an AnalogMux (Pico W's UART1)."""

    def __init__(self, mux, baud):
        self.mux = mux
        self.baudrate = baud
        self.rx = bytearray()
        self.inits = []

    def init(self, baudrate=9600, **kw):
        self.baudrate = baudrate
        self.inits.append(baudrate)

    def _pump(self, tx=b""):
        self.rx += self.mux.exchange(self.baudrate, tx)

    def any(self):
        self._pump()
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        self._pump()
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data):
        self._pump(bytes(data))
        return len(data)


class SC16IS752:
    """Register-level SC16IS752 on I2C: channels 0/1 each with LCR/DLL/DLH/FCR/EFCR, a 64-byte
    RX FIFO (overflow counted) and a line to `lines[ch]` (an AnalogMux or a Wire); IODIR/IOSTATE
    shared. The line's baud rate is what the divisor sets: xtal / (16 * divisor)."""

    def __init__(self, lines, xtal_hz=14745600):
        self.lines = lines
        self.xtal_hz = xtal_hz
        self.regs = [dict(LCR=0, DLL=0, DLH=0, FCR=0, EFCR=0) for _ in range(2)]
        self.fifo = [bytearray(), bytearray()]
        self.overruns = [0, 0]
        self.iodir = 0
        self.iostate = 0
        self.thr_writes = [0, 0]

    def baud(self, ch):
        r = self.regs[ch]
        div = r["DLL"] | (r["DLH"] << 8)
        return self.xtal_hz // (16 * div) if div else WIRE_BAUD_UNSET

    def _line(self, ch, tx=b""):
        line = self.lines.get(ch)
        if line is None:
            return
        if isinstance(line, AnalogMux):
            got = line.exchange(self.baud(ch), tx)
        else:
            got = line.drain()
            if line.baud != self.baud(ch):
                got = b""
            elif tx:
                line.link.write(tx)
        f = self.fifo[ch]
        room = 64 - len(f)
        f += got[:room]
        self.overruns[ch] += max(0, len(got) - room)

    def write(self, sub, data):
        reg, ch = (sub >> 3) & 0x0F, (sub >> 1) & 0x03
        r = self.regs[ch]
        latch = r["LCR"] & 0x80
        if reg == 0x00:
            if latch:
                r["DLL"] = data[0]
            else:
                self.thr_writes[ch] += 1
                self._line(ch, bytes(data))
        elif reg == 0x01 and latch:
            r["DLH"] = data[0]
        elif reg == 0x02:
            r["FCR"] = data[0]
            if data[0] & 0x02:
                self.fifo[ch].clear()
        elif reg == 0x03:
            r["LCR"] = data[0]
        elif reg == 0x0A:
            self.iodir = data[0]
        elif reg == 0x0B:
            self.iostate = data[0] & self.iodir
        elif reg == 0x0F:
            r["EFCR"] = data[0]
        else:
            raise AssertionError("unexpected register write 0x%02x" % reg)

    def read(self, sub, n):
        reg, ch = (sub >> 3) & 0x0F, (sub >> 1) & 0x03
        if reg == 0x09:                 # RXLVL
            self._line(ch)
            return bytes([len(self.fifo[ch])])
        if reg == 0x08:                 # TXLVL: the line drains instantly
            return bytes([64])
        if reg == 0x00:                 # RHR burst
            f = self.fifo[ch]
            assert n <= len(f), "read past RXLVL"
            out = bytes(f[:n])
            del f[:n]
            return out
        raise AssertionError("unexpected register read 0x%02x" % reg)


class I2CBus:
    """machine.I2C: plain transfers go to I2CLink models, register transfers to the bridge."""

    def __init__(self, link, bridges):
        self.link = link
        self.bridges = bridges

    def writeto(self, addr, buf, stop=True):
        return self.link.writeto(addr, buf)

    def readfrom_into(self, addr, buf, stop=True):
        self.link.readfrom_into(addr, buf)

    def writeto_mem(self, addr, mem, buf):
        if addr not in self.bridges:
            raise OSError(19)
        self.bridges[addr].write(mem, bytes(buf))

    def readfrom_mem_into(self, addr, mem, buf):
        if addr not in self.bridges:
            raise OSError(19)
        buf[:] = self.bridges[addr].read(mem, len(buf))


class NullUART:
    def __init__(self):
        self.baudrate = 0

    def init(self, baudrate=9600, **kw):
        self.baudrate = baudrate

    def any(self):
        return 0

    def readinto(self, buf, nbytes=None):
        return None

    def write(self, b):
        return len(b)


def fake_machine(hw, port):
    """A `machine` module whose UART(id)/I2C(id) return hw's objects and whose Pins record.
    Every call is checked against the port's stub (tests/stubsig.py): an argument the real
    port would refuse fails here too."""
    m = types.ModuleType("machine")

    class Pin:
        OUT = 1
        IN = 0
        PULL_UP = 2

        def __init__(self, pid, mode=-1, pull=-1, value=None, **kw):
            self.id = pid
            self.mode = mode
            self._v = value or 0
            self.history = [self._v] if value is not None else []
            hw.pins[pid] = self

        def value(self, v=None):
            if v is None:
                return self._v
            self._v = v
            self.history.append(v)

    def UART(uid, baudrate=9600, tx=None, rx=None, rxbuf=256, **kw):
        u = hw.uarts.get(uid) or NullUART()
        u.init(baudrate=baudrate)
        hw.opened_uarts.append(uid)
        hw.uart_pins[uid] = (tx, rx)
        return u

    def I2C(iid, sda=None, scl=None, freq=400000, **kw):
        hw.i2c_ids.append(iid)
        return hw.i2c

    def reset_cause():
        return 1

    m.Pin = Pin
    m.UART = UART
    m.I2C = I2C
    m.reset_cause = reset_cause
    m.PWRON_RESET = 1
    m.WDT_RESET = 3
    return strict_module(m, port, "machine")


class Hardware:
    def __init__(self):
        self.pins = {}
        self.uarts = {}
        self.i2c = None
        self.opened_uarts = []
        self.uart_pins = {}
        self.i2c_ids = []


# -- the kit at the ends of the wires -------------------------------------------------------------

ZE03_VALUES = {"o3": ("o3_ppb", 41.0), "no2": ("no2_ppb", 87.0), "so2": ("so2_ppb", 16.0),
               "co": ("co_ppm", 2.3)}


def kit_models(clock, truth):
    from envbox.simulator.models.modbus_noise import ModbusNoise
    from envbox.simulator.models.pms5003 import PMS5003
    from envbox.simulator.models.scd4x import SCD4x
    from envbox.simulator.models.sht4x import SHT4x
    from envbox.simulator.models.ze03 import ZE03
    from envbox.simulator.models.ze08 import ZE08
    from envbox.simulator.world import World
    world = World(T0_S, seed=3)

    def link(model):
        ln = SerialLink(model)
        clock.links.append(ln)
        return ln

    serial = {"pms5003": link(PMS5003(world, truth, seed=3))}
    for gas, (key, v) in ZE03_VALUES.items():
        serial["ze03_" + gas] = link(ZE03(world, truth, seed=3, gas=gas, values={key: v},
                                          warmup_s=0))
    serial["ze08"] = link(ZE08(world, truth, seed=3, values={"hcho_ppb": 23.0}, warmup_s=0))
    serial["modbus_noise"] = link(ModbusNoise(world, truth, seed=3))
    i2c = I2CLink({0x62: SCD4x(world, truth, seed=3), 0x44: SHT4x(world, truth, seed=3)})
    clock.links.append(i2c)
    return serial, i2c


# the Winsen modules' 180 s electrochemical warm-up, off for a 60 s run (models: warmup_s=0)
NO_WARMUP = {"cfg": {n: {"warmup_ms": 0} for n in ("ze03_o3", "ze03_no2", "ze03_so2", "ze03_co",
                                                     "ze08")}}


def import_board(name, machine_mod):
    sys.modules["machine"] = machine_mod
    for mod in ("envbox.boards." + name, "envbox.boards.buses"):
        sys.modules.pop(mod, None)
    import importlib
    return importlib.import_module("envbox.boards." + name)


@pytest.fixture
def restore_modules():
    saved = dict(sys.modules)
    yield
    for k in list(sys.modules):
        if k not in saved:
            del sys.modules[k]
    sys.modules.update(saved)


def run_samples(board, clock, slots_s, step_ms=5):
    """The sampler's cycle per slot: request all, poll until all ready or the board's answer
    timeout, fill one wire.Sample. Polls every step_ms in between (the io loop)."""
    import envbox.firmware.wire as wire
    t = clock.t_ms
    for d in board.sensors:
        d.start(t)
    out = {}
    for slot in slots_s:
        t_slot = slot * 1000
        while t < t_slot:
            clock.set(t)
            for d in board.sensors:
                d.poll(t)
            t += step_ms
        clock.set(t)
        start = t
        for d in board.sensors:
            d.request(start)
        while not all(d.ready() for d in board.sensors) and t - start < board.answer_timeout_ms:
            t += step_ms
            clock.set(t)
            for d in board.sensors:
                d.poll(t)
        s = wire.Sample(b"t")
        for d in board.sensors:
            d.fill(s, t)
        out[slot] = (s, t - start)
    return out


def check_samples(samples, truth, serial):
    import envbox.firmware.wire as wire

    def last(kind):
        r = truth.last(kind)
        assert r is not None, kind
        return r

    for slot, (s, waited_ms) in samples.items():
        def st(ch):
            return wire.STATUS_NAMES[s.status[ch]]
        for name in ("pm25_ugm3", "o3_ppb", "no2_ppb", "so2_ppb", "co_ppm", "hcho_ppb",
                     "noise_dba", "co2_ppm", "temp_c"):
            ch = [i for i, c in enumerate(wire.CHANNELS) if c[0] == name][0]
            assert st(ch) == "ok", (slot, name, st(ch))
    # the last sample against the values the models handed out last
    s = samples[max(samples)][0]
    assert s.value[wire.CH_PM25] == last("pms5003")["pm25_ugm3"]
    assert s.value[wire.CH_O3] == round(last("ze03_o3")["o3_ppb"])
    assert s.value[wire.CH_NO2] == round(last("ze03_no2")["no2_ppb"])
    assert s.value[wire.CH_SO2] == round(last("ze03_so2")["so2_ppb"])
    assert s.value[wire.CH_CO] == round(last("ze03_co")["co_ppm"] * 10)
    assert s.value[wire.CH_HCHO] == last("ze08")["hcho_ppb"]
    assert s.value[wire.CH_CO2] == last("scd4x")["co2_ppm"]
    # every module heard only its own protocol's commands (no cross-talk through the mux)
    assert bytes(serial["pms5003"].written[:2]) == b"\x42\x4d"
    for name in ("ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08"):
        w = bytes(serial[name].written)
        assert w and len(w) % 9 == 0 and all(w[i] == 0xFF for i in range(0, len(w), 9)), name
    w = bytes(serial["modbus_noise"].written)
    assert w and len(w) % 8 == 0 and all(w[i:i + 2] == b"\x01\x03" for i in range(0, len(w), 8))


def plan_rules(board, uart_ids_free):
    """No two modules on one UART unless behind the mux/bridge; every driver constructed;
    channel coverage complete."""
    import envbox.firmware.wire as wire
    plan = board.bus_plan()
    names = [p[0] for p in plan]
    assert len(names) == len(set(names))
    direct = [p[1] for p in plan if p[1].startswith("uart") and not p[1].endswith("-mux")]
    assert len(direct) == len(set(direct))
    for bus in direct:
        assert int(bus[4:]) in uart_ids_free
    where = [(p[1], p[2]) for p in plan]
    assert len(where) == len(set(where)), "two modules on one channel/address"
    assert len(board.sensors) == len(plan) - 1 and board.gnss is not None
    covered = set()
    for d in board.sensors:
        covered.update(d.CHANNELS)
    want = {i for i, c in enumerate(wire.CHANNELS)}
    assert covered == want, sorted(wire.CHANNELS[i][0] for i in want - covered)


# -- tests ----------------------------------------------------------------------------------------

def test_pico_w_mux_plan_and_samples(restore_modules):
    clock = Clock()
    truth = Recorder()
    serial, i2c = kit_models(clock, truth)
    hw = Hardware()
    order = ["pms5003", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise"]
    bauds = {"modbus_noise": 4800}
    wires = {ch: Wire(serial[n], bauds.get(n, 9600)) for ch, n in enumerate(order)}

    def selected():
        return sum(hw.pins[p].value() << i for i, p in enumerate((10, 11, 12)))

    mux = AnalogMux(wires, selected)
    hw.uarts[1] = MuxedUART(mux, 9600)
    hw.i2c = I2CBus(i2c, {})
    mod = import_board("pico_w", fake_machine(hw, "rp2"))
    board = mod.Board(dict(NO_WARMUP, device_id="pico-test"))
    board.ticks_ms = clock
    assert hw.opened_uarts == [0, 1] and hw.i2c_ids == [1]
    plan_rules(board, {0, 1})
    samples = run_samples(board, clock, [40, 50, 60])
    check_samples(samples, truth, serial)
    # the mux re-clocked the UART for the 4800-baud meter and back
    assert 4800 in hw.uarts[1].inits and hw.uarts[1].inits[-1] in (4800, 9600)
    # one silent hold at most: the ZE08's mode switch, which that dialect never acknowledges
    assert board.mux.overflows == 0 and board.mux.silent <= 1
    # answers complete by their length: well under the board's answer timeout
    assert max(w for _, w in samples.values()) < mod.ANSWER_TIMEOUT_MS


def test_esp32_lte_bridge_mux_rs485_plan_and_samples(restore_modules):
    clock = Clock()
    truth = Recorder()
    serial, i2c = kit_models(clock, truth)
    hw = Hardware()
    order = ["pms5003", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08"]
    wires = {ch: Wire(serial[n], 9600) for ch, n in enumerate(order)}
    bridge = None

    def selected():
        return bridge.iostate & 0x07

    bridge = SC16IS752({0: AnalogMux(wires, selected), 1: Wire(serial["modbus_noise"], 4800)})
    hw.i2c = I2CBus(i2c, {0x48: bridge})
    mod = import_board("esp32_lte", fake_machine(hw, "esp32"))
    board = mod.Board(dict(NO_WARMUP, device_id="esp-test"))
    board.ticks_ms = clock
    # UART0 (console) is left alone, UART2 is the GNSS receiver's, UART1 the modem's
    assert hw.opened_uarts == [2, 1]
    plan_rules(board, {2})
    assert bridge.baud(0) == 9600 and bridge.baud(1) == 4800
    assert bridge.regs[1]["EFCR"] & 0x30 == 0x30       # RTS drives DE while sending
    assert bridge.iodir & 0x07 == 0x07                 # IO0..IO2 drive S0..S2
    samples = run_samples(board, clock, [40, 50, 60])
    check_samples(samples, truth, serial)
    assert bridge.overruns == [0, 0]
    assert board.mux.overflows == 0 and board.mux.silent <= 1
    assert board.bridge_a.i2c_errors == 0 and board.bridge_b.i2c_errors == 0


def test_mux_releases_a_silent_module_after_hold_and_serves_the_queue(restore_modules):
    from envbox.boards.buses import MuxUART
    clock = Clock()
    sel = []
    mux = MuxUART(NullUART(), sel.append, clock, hold_ms=100, gap_ms=10)
    a = mux.port(0, 9)
    b = mux.port(1, 9)
    assert a.write(b"\xff\x01\x86\x00\x00\x00\x00\x00\x79") == 9
    assert b.write(b"\xff\x01\x86\x00\x00\x00\x00\x00\x79") == 9     # queued behind a
    assert sel == [0] and mux.queued == 1 and mux.owner is a
    clock.set(99)
    assert b.any() == 0 and mux.owner is a
    clock.set(100)                       # a never answered: released, b's command goes out
    b.any()
    assert sel == [0, 1] and mux.owner is b and mux.silent == 1
    for _ in range(3):                   # a full queue drops, counted, never blocks
        a.write(bytes(12))
    assert mux.overflows == 1


MP_MACHINE = '''
class Pin:
    OUT = 1
    IN = 0
    def __init__(self, pid, mode=None, value=None):
        self.id = pid
        self.v = value or 0
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
class UART:
    def __init__(self, uid, baudrate=9600, **kw):
        self.id = uid
    def init(self, baudrate=9600, **kw):
        pass
    def any(self):
        return 0
    def readinto(self, buf, nbytes=None):
        return None
    def write(self, b):
        return len(b)
class I2C:
    def __init__(self, iid, **kw):
        self.regs = {}
    def writeto(self, addr, buf, stop=True):
        return len(buf)
    def readfrom_into(self, addr, buf, stop=True):
        raise OSError(19)
    def writeto_mem(self, addr, mem, buf):
        pass
    def readfrom_mem_into(self, addr, mem, buf):
        buf[0] = 64 if (mem >> 3) == 8 else 0
def reset_cause():
    return 1
'''

MP_SCRIPT = '''
import json, sys
for name in ("pico_w", "esp32_lte"):
    m = __import__("envbox.boards." + name, None, None, ("Board",))
    b = m.Board({"device_id": "mp"})
    print(json.dumps({"board": name, "plan": [list(p) for p in b.bus_plan()],
                      "sensors": len(b.sensors)}))
'''


def test_boards_import_and_build_under_micropython(tmp_path):
    (tmp_path / "machine.py").write_text(MP_MACHINE)
    (tmp_path / "run.py").write_text(MP_SCRIPT)
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (tmp_path, MPSRC))
    r = subprocess.run([exe, str(tmp_path / "run.py")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    plans = {d["board"]: d for d in map(json.loads, r.stdout.splitlines())}
    for name in ("pico_w", "esp32_lte"):
        assert plans[name]["sensors"] == 9
        assert plans[name]["plan"][0][0] == "gnss"


# -- the LTE modem's pins (LilyGO-T-A76XX utilities.h: LILYGO_SIM7600X, LILYGO_T_A7670) ----------

@pytest.mark.parametrize("variant,uart,high,low,inputs", [
    # T-SIM7600X: ESP32 TX 27 -> modem RXD, RX 26; FLIGHT 25 high (RF on); PWRKEY 4 released;
    # DTR 32 low (awake); STATUS 34 read
    ("sim7600", (27, 26), {25}, {4, 32}, {34}),
    # T-A7670X: ESP32 TX 26, RX 27; POWERON 12 high (modem supply); RESET 5 released (active
    # high); DTR 25 low; PWRKEY 4 released; no STATUS line
    ("a7670", (26, 27), {12}, {4, 5, 25}, set()),
])
def test_esp32_lte_modem_pins(restore_modules, variant, uart, high, low, inputs):
    hw = Hardware()
    hw.i2c = I2CBus(I2CLink({}), {0x48: SC16IS752({})})
    mod = import_board("esp32_lte", fake_machine(hw, "esp32"))
    board = mod.Board({"device_id": "esp-pins", "modem": variant, "modules": ["sht4x"]})
    assert hw.uart_pins[1] == uart
    outs = {p for p, pin in hw.pins.items() if pin.mode == 1 and p not in (21, 22)}
    assert outs == high | low, outs
    assert {p for p in outs if hw.pins[p].value()} == high
    assert {p for p, pin in hw.pins.items() if pin.mode == 0} == inputs
    # each output got its safe level at construction, never another one first
    assert all(hw.pins[p].history == [hw.pins[p].value()] for p in outs)
    link = board.link
    assert link.NAME == "lte" and link.variant == variant
    assert set(link.modem.pins) == {"sim7600": {"pwrkey", "flight", "dtr", "status"},
                                    "a7670": {"pwrkey", "poweron", "reset", "dtr"}}[variant]


def test_strict_fakes_refuse_what_the_port_refuses(restore_modules):
    hw = Hardware()
    m = fake_machine(hw, "esp32")
    m.UART(1, baudrate=115200, tx=27, rx=26, rxbuf=4096)
    with pytest.raises(StubMismatch):
        m.UART(1, baud=115200)                     # the keyword is baudrate
    with pytest.raises(StubMismatch):
        m.Pin(4, m.Pin.OUT, initial=1)             # the keyword is value
    with pytest.raises(StubMismatch):
        m.I2C(0, sda=21, scl=22, frequency=100000)
    pin = m.Pin(4, m.Pin.OUT, value=0)
    with pytest.raises(StubMismatch):
        pin.value(1, 2)
    mr = fake_machine(hw, "rp2")
    mr.UART(1, baudrate=9600, tx=4, rx=5, rxbuf=256)


# -- what the two microcontroller boards share (boards/buses.py McuBoard) ---------------------

@pytest.mark.parametrize("name,port", [("pico_w", "rp2"), ("esp32_lte", "esp32")])
def test_reset_cause_names_from_the_ports_constants(restore_modules, name, port):
    from stubsig import has_attr
    m = fake_machine(Hardware(), port)
    consts = {"PWRON_RESET": "power_on", "WDT_RESET": "watchdog", "HARD_RESET": "hard",
              "SOFT_RESET": "soft", "DEEPSLEEP_RESET": "deep_sleep"}
    have = [c for c in consts if has_attr(port, "machine", c)]
    assert {"PWRON_RESET", "WDT_RESET"} <= set(have)
    cause = [0]
    m.reset_cause = lambda: cause[0]
    for i, c in enumerate(have):
        setattr(m, c, 10 + i)
    mod = import_board(name, m)
    for i, c in enumerate(have):
        cause[0] = 10 + i
        assert mod.Board.reset_cause(None) == consts[c], c
    cause[0] = 99                  # a cause the port names otherwise: the app infers it
    assert mod.Board.reset_cause(None) is None
