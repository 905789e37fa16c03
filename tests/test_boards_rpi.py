"""boards/rpi.py on CPython: the box's drivers through the board's pyserial adapter, on the
simulator's pseudo-terminals (pyserial opens a pty path like /dev/ttyUSB0), sampled the way the
firmware's sampler does and compared with ground_truth.jsonl.

I2C on a Pi needs /dev/i2c-N, which a test machine does not have; the smbus2 adapter is tested
against a fake at the smbus2 API level instead (`i2c_rdwr(*i2c_msg)`), which plays the Sensirion
parts from the golden vectors and checks the messages the adapter builds (address, read flag,
length, bytes)."""

import errno
import json
import time

import pytest
import serial
from smbus2 import i2c_msg

from envbox.boards import rpi
from envbox.firmware import wire
from envbox.firmware.drivers.nmea import GNSS
from envbox.simulator.run import Simulation, add_model_spec
from envbox.simulator.truth import read_ground_truth

from drivers_link import vectors

T0 = 1764290000
WARP = 20.0
SPECS = ["ze03.ZE03:gas=o3,warmup_s=0", "ze03.ZE03:gas=no2,warmup_s=0",
         "ze03.ZE03:gas=so2,warmup_s=0", "ze03.ZE03:gas=co,warmup_s=0", "ze08.ZE08:warmup_s=0",
         "mhz19b.MHZ19B:warmup_s=0", "modbus_noise.ModbusNoise"]


def test_rpi_board_samples_simulated_modules_over_pyserial(tmp_path):
    sim = Simulation(tmp_path / "run", minutes=3, warp=WARP, start_virtual_s=T0)
    for spec in SPECS:
        add_model_spec(sim, spec)
    sim.start()
    board = None
    try:
        paths = json.loads(open(sim.sim_json_path).read())["serial"]
        # timeouts in virtual ms, wide enough for the host's scheduling at warp 20
        qa = {"warmup_ms": 0, "timeout_ms": 3000}
        config = {
            "device_id": "rpi-test",
            "gnss": paths["gnss"],
            "serial": {name: {"port": path, "cfg": dict(qa)} for name, path in paths.items()
                       if name not in ("gnss", "modbus_noise")},
            "i2c": {},
        }
        config["serial"]["modbus_noise"] = {"port": paths["modbus_noise"],
                                            "cfg": {"timeout_ms": 3000}}
        opened = []

        def open_uart(path, baud, rs485):
            # the board's adapter on a real pyserial port (the pty), as on a Pi
            u = rpi.SerialUART(path, baud, rs485)
            assert isinstance(u._s, serial.Serial) and u._s.timeout == 0
            opened.append((path, baud))
            return u

        def virtual_ms():
            return int((sim.clock.now() - T0) * 1000)

        board = rpi.Board(config, open_uart=open_uart, ticks_ms=virtual_ms)
        assert sorted(board.by_name) == sorted(n for n in paths if n != "gnss")
        # the Modbus meter is opened at its driver's baud, the Winsen modules at 9600
        assert dict((p, b) for p, b in opened)[paths["modbus_noise"]] == 4800
        assert dict((p, b) for p, b in opened)[paths["ze08"]] == 9600

        drivers = board.sensors
        g = board.gnss
        for d in drivers:
            d.start(board.ticks_ms())
        samples = {}
        for slot in (T0 + 40, T0 + 50, T0 + 60):   # PMS5003 warm-up: 30 s after power-on
            while sim.clock.now() < slot:          # the io loop between samples
                now = board.ticks_ms()
                g.poll(now)
                for d in drivers:
                    d.poll(now)
                time.sleep(0.002)
            start = board.ticks_ms()
            for d in drivers:
                d.request(start)
            while not all(d.ready() for d in drivers) and board.ticks_ms() - start < 3000:
                now = board.ticks_ms()
                g.poll(now)
                for d in drivers:
                    d.poll(now)
                time.sleep(0.002)
            # the fix of second `slot` may still be on its way (fix_wait)
            while not g.has_fix(slot - wire.EPOCH_2020_UNIX_S) and board.ticks_ms() - start < 3000:
                g.poll(board.ticks_ms())
                time.sleep(0.002)
            s = wire.Sample(board.device_id)
            now = board.ticks_ms()
            for d in drivers:
                d.fill(s, now)
            g.fill(s, slot - wire.EPOCH_2020_UNIX_S)
            samples[slot] = s
        truth = read_ground_truth(sim.ground_truth_path)
    finally:
        sim.stop()
        if board is not None:
            board.close()

    def rec(kind, slot, mode=None):
        rs = [r for r in truth if r["kind"] == kind and r.get("slot") == slot
              and (mode is None or r.get("mode") == mode)]
        assert rs, (kind, slot)
        return rs[-1]

    prev = T0 - 1
    for slot, s in samples.items():
        def st(ch):
            return wire.STATUS_NAMES[s.status[ch]]
        for ch in (wire.CH_PM25, wire.CH_O3, wire.CH_NO2, wire.CH_SO2, wire.CH_CO, wire.CH_HCHO,
                   wire.CH_CO2, wire.CH_NOISE):
            assert st(ch) == "ok", (slot, wire.CHANNELS[ch][0])
        pms = rec("pms5003", slot)
        for name in ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "pm25_cf1_ugm3", "n03_per_dl"):
            ch = [i for i, c in enumerate(wire.CHANNELS) if c[0] == name][0]
            assert s.value[ch] == pms[name], (slot, name)
        assert s.value[wire.CH_O3] == round(rec("ze03_o3", slot, "qa")["o3_ppb"])
        assert s.value[wire.CH_NO2] == round(rec("ze03_no2", slot, "qa")["no2_ppb"])
        assert s.value[wire.CH_SO2] == round(rec("ze03_so2", slot, "qa")["so2_ppb"])
        assert s.value[wire.CH_CO] == round(rec("ze03_co", slot, "qa")["co_ppm"] * 10)
        assert s.value[wire.CH_HCHO] == rec("ze08", slot, "qa")["hcho_ppb"]
        assert s.value[wire.CH_CO2] == rec("mhz19b", slot)["co2_ppm"]
        # LAeq over the window since the previous sample (the first one: since start)
        noise = [r["raw"] for r in truth if r["kind"] == "modbus_noise"
                 and prev < r["t_virtual"] <= slot + 1]
        assert noise and min(noise) <= s.value[wire.CH_NOISE] <= max(noise)
        assert s.value[wire.CH_NOISE_LMAX] <= max(noise)
        prev = slot
        fix = [r for r in truth if r["kind"] == "gnss" and r["t"] == slot]
        assert fix and s.fix_quality == fix[0]["fix_quality"]
        assert (s.lat_e7, s.lon_e7) == (fix[0]["lat_e7"], fix[0]["lon_e7"])
    assert board.by_name["mhz19b"].checksum_errors == 0


def test_two_modules_on_one_port_are_refused():
    made = []
    cfg = {"serial": {"ze03_o3": "/dev/ttyUSB0", "ze03_no2": "/dev/ttyUSB0"}}
    with pytest.raises(ValueError, match="one module per port"):
        rpi.Board(cfg, open_uart=lambda p, b, r: made.append(p) or FakePort())
    with pytest.raises(ValueError, match="no driver"):
        rpi.Board({"serial": {"bme680": "/dev/ttyUSB0"}}, open_uart=lambda p, b, r: FakePort())


class FakePort:
    """serial.Serial's attributes the adapter uses, for the adapter's own semantics."""

    def __init__(self, rx=b""):
        self.rx = bytearray(rx)
        self.tx = bytearray()
        self.flushed = 0

    @property
    def in_waiting(self):
        return len(self.rx)

    def read(self, n):
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def write(self, b):
        self.tx += b
        return len(b)

    def reset_input_buffer(self):
        self.flushed += 1
        self.rx.clear()

    def close(self):
        pass


def test_serial_adapter_flushes_on_open_and_never_blocks():
    p = FakePort(b"power-on chatter")
    u = rpi.SerialUART(p)
    assert p.flushed == 1 and u.any() == 0
    buf = bytearray(4)
    assert u.readinto(buf) is None              # nothing there: None at once, like machine.UART
    p.rx += b"\x42\x4d\x00\x1c\x01"
    assert u.any() == 5
    assert u.readinto(buf, 3) == 3 and bytes(buf[:3]) == b"\x42\x4d\x00"
    assert u.readinto(buf) == 2 and bytes(buf[:2]) == b"\x1c\x01"
    u.write(bytearray(b"\x42\x4d\xe2\x00\x00\x01\x71"))
    assert bytes(p.tx) == b"\x42\x4d\xe2\x00\x00\x01\x71"


def test_gnss_through_serial_adapter_on_vector_bytes():
    vs = [v for v in vectors("nmea")["vectors"] if v["ok"] and v["text"].startswith("$GNRMC,0215")
          or v["ok"] and v["text"].startswith("$GNGGA,0215")]
    assert len(vs) == 2
    p = FakePort()
    g = GNSS(rpi.SerialUART(p))
    for v in vs:
        p.rx += bytes.fromhex(v["hex"])
    assert g.poll(0) == 1
    assert g.lat_e7 == vs[0]["decoded"]["lat_e7"] and g.sats == vs[1]["decoded"]["sats"]


class FakeSMBus:
    """smbus2.SMBus's i2c_rdwr at the message level: Sensirion devices by address that answer a
    read with scripted bytes; an absent address raises what Linux's i2c-dev raises on a NACK."""

    def __init__(self, replies):
        self.replies = replies          # addr -> list of reply bytes, one per read
        self.log = []                   # (addr, "w"|"r", bytes or length)

    def i2c_rdwr(self, *msgs):
        for m in msgs:
            assert isinstance(m, i2c_msg)
            if m.addr not in self.replies:
                raise OSError(errno.EREMOTEIO, "Remote I/O error")
            if m.flags & rpi.I2C_M_RD:
                data = self.replies[m.addr].pop(0)
                assert len(data) == m.len
                self.log.append((m.addr, "r", m.len))
                for i, b in enumerate(data):
                    m.buf[i] = bytes((b,))
            else:
                assert m.flags == 0
                self.log.append((m.addr, "w", bytes(m)))

    def close(self):
        pass


def _sensirion(proto):
    return [v for v in vectors(proto)["vectors"] if v["ok"]]


def test_smbus_adapter_drives_sht4x_and_scd4x_messages():
    sht = _sensirion("sht4x")[0]
    scd = [v for v in _sensirion("scd4x") if v.get("kind") == "measurement"][0]
    ready = [v for v in _sensirion("scd4x") if v.get("kind") == "data_ready"
             and v["decoded"]["ready"]][0]
    bus = FakeSMBus({0x44: [bytes.fromhex(sht["hex"])],
                     0x62: [bytes.fromhex(ready["hex"]), bytes.fromhex(scd["hex"])]})
    cfg = {"i2c": {"bus": 1, "devices": {"0x44": "sht4x", "0x62": "scd4x"}}}
    board = rpi.Board(cfg, open_i2c=lambda n: rpi.SMBusI2C(bus))
    sht_d, scd_d = board.by_name["sht4x"], board.by_name["scd4x"]
    # SHT4x: soft reset, measure high precision, read 6 bytes after 9 ms
    sht_d.start(0)
    sht_d.request(0)
    sht_d.poll(10)
    assert bus.log[:3] == [(0x44, "w", b"\x94"), (0x44, "w", b"\xfd"), (0x44, "r", 6)]
    s = wire.Sample(b"t")
    sht_d.fill(s, 10)
    assert s.value[wire.CH_TEMP] == round(sht["decoded"]["temp_c"] * 100)
    assert s.value[wire.CH_RH] == round(sht["decoded"]["rh_pct"] * 100)
    # SCD4x: stop, start periodic, data ready?, read measurement
    del bus.log[:]
    scd_d.start(0)
    scd_d.poll(500)
    scd_d.request(6000)
    for t in (6001, 6002, 6003):
        scd_d.poll(t)
    assert bus.log == [(0x62, "w", b"\x3f\x86"), (0x62, "w", b"\x21\xb1"),
                       (0x62, "w", b"\xe4\xb8"), (0x62, "r", 3),
                       (0x62, "w", b"\xec\x05"), (0x62, "r", 9)]
    s = wire.Sample(b"t")
    scd_d.fill(s, 6003)
    assert wire.STATUS_NAMES[s.status[wire.CH_CO2]] == "ok"
    assert s.value[wire.CH_CO2] == scd["decoded"]["co2_ppm"]


def test_smbus_nack_is_an_oserror_the_driver_counts():
    bus = FakeSMBus({})
    i2c = rpi.SMBusI2C(bus)
    with pytest.raises(OSError):
        i2c.readfrom_into(0x44, bytearray(6))
    board = rpi.Board({"i2c": {"devices": {"0x44": "sht4x"}}}, open_i2c=lambda n: i2c)
    d = board.by_name["sht4x"]
    d.request(0)
    s = wire.Sample(b"t")
    d.fill(s, 20)
    assert d.nacks == 1 and wire.STATUS_NAMES[s.status[wire.CH_TEMP]] == "no_data"
    assert i2c.scan() == []
