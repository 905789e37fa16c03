"""The serial and I2C models served by the real simulator (pseudo-terminals and the I2C socket
bridge) read by the firmware drivers on CPython, compared with the run's ground_truth.jsonl.

This is the path the `sim` board takes, minus MicroPython: the bytes cross a real pty in raw
mode and a Unix socket, with the virtual clock running at warp 10.
"""

import os
import time

from envbox.firmware import wire
from envbox.firmware.drivers.mhz19b import MHZ19B
from envbox.firmware.drivers.modbus_noise import ModbusNoise
from envbox.firmware.drivers.scd4x import SCD4x
from envbox.firmware.drivers.sds011 import SDS011
from envbox.firmware.drivers.sht4x import SHT4x
from envbox.firmware.drivers.ze03 import ZE03
from envbox.firmware.drivers.ze08 import ZE08
from envbox.simulator.i2c_bridge import I2CBridgeClient
from envbox.simulator.pty import open_raw
from envbox.simulator.run import Simulation, add_model_spec
from envbox.simulator.truth import read_ground_truth


class FdUART:
    """A pty slave opened raw and non-blocking, with machine.UART's read API."""

    def __init__(self, path):
        self.fd = open_raw(path)

    def any(self):
        return 1

    def readinto(self, buf, nbytes=None):
        try:
            data = os.read(self.fd, len(buf) if nbytes is None else nbytes)
        except BlockingIOError:
            return None
        buf[:len(data)] = data
        return len(data)

    def write(self, b):
        return os.write(self.fd, bytes(b))

    def close(self):
        os.close(self.fd)


SPECS = ["ze03.ZE03:gas=no2,warmup_s=0", "ze03.ZE03:gas=co,warmup_s=0", "ze08.ZE08:warmup_s=0",
         "mhz19b.MHZ19B:warmup_s=0", "sds011.SDS011:warmup_s=0", "modbus_noise.ModbusNoise",
         "sht4x.SHT4x:addr=0x44", "scd4x.SCD4x:addr=0x62"]


def test_drivers_read_models_over_pty_and_i2c_bridge(tmp_path):
    warp = 10.0
    t0 = 1764290000
    sim = Simulation(tmp_path / "run", minutes=2, warp=warp, start_virtual_s=t0)
    for spec in SPECS:
        add_model_spec(sim, spec)
    sim.start()
    uarts = []
    try:
        paths = sim.status()["serial"]
        i2c = I2CBridgeClient(sim.i2c_socket_path)

        def uart(name):
            u = FdUART(paths[name]["path"])
            uarts.append(u)
            return u

        # timeouts in virtual ms, generous for host scheduling at warp 10
        drivers = {
            "ze03_no2": ZE03(uart("ze03_no2"), {"gas": "no2", "warmup_ms": 0, "timeout_ms": 3000}),
            "ze03_co": ZE03(uart("ze03_co"), {"gas": "co", "warmup_ms": 0, "timeout_ms": 3000}),
            "ze08": ZE08(uart("ze08"), {"warmup_ms": 0, "timeout_ms": 3000}),
            "mhz19b": MHZ19B(uart("mhz19b"), {"warmup_ms": 0, "timeout_ms": 3000}),
            "sds011": SDS011(uart("sds011"), {"warmup_ms": 0, "timeout_ms": 3000}),
            "modbus_noise": ModbusNoise(uart("modbus_noise"), {"timeout_ms": 3000}),
            "sht4x": SHT4x(i2c, {"timeout_ms": 3000}),
            "scd4x": SCD4x(i2c, {"timeout_ms": 3000}),
        }

        def now_ms():
            return int((sim.clock.now() - t0) * 1000)

        for d in drivers.values():
            d.start(now_ms())
        samples = {}
        for k in (1, 2, 3):
            slot = t0 + 10 * k
            while sim.clock.now() < slot:          # the box's io loop between samples
                for d in drivers.values():
                    d.poll(now_ms())
                time.sleep(0.002)
            start = now_ms()
            for d in drivers.values():
                d.request(start)
            while not all(d.ready() for d in drivers.values()) and now_ms() - start < 3000:
                for d in drivers.values():
                    d.poll(now_ms())
                time.sleep(0.002)
            s = wire.Sample(b"t")
            for d in drivers.values():
                d.fill(s, now_ms())
            samples[slot] = s
        truth = read_ground_truth(sim.ground_truth_path)
    finally:
        sim.stop()
        for u in uarts:
            u.close()

    def rec(kind, slot, mode=None):
        rs = [r for r in truth if r["kind"] == kind and r.get("slot") == slot
              and (mode is None or r.get("mode") == mode)]
        assert rs, (kind, slot)
        return rs[-1]

    for slot in (t0 + 20, t0 + 30):                # slot 1 may still see power-on frames
        s = samples[slot]
        for ch in (wire.CH_NO2, wire.CH_CO, wire.CH_HCHO, wire.CH_CO2, wire.CH_PM25, wire.CH_PM10,
                   wire.CH_NOISE, wire.CH_TEMP, wire.CH_RH):
            assert wire.STATUS_NAMES[s.status[ch]] == "ok", (slot, wire.CHANNELS[ch][0])
        assert s.value[wire.CH_NO2] == round(rec("ze03_no2", slot, "qa")["no2_ppb"])
        assert s.value[wire.CH_CO] == round(rec("ze03_co", slot, "qa")["co_ppm"] * 10)
        assert s.value[wire.CH_HCHO] == rec("ze08", slot, "qa")["hcho_ppb"]
        # CO2 comes from both the MH-Z19B and the SCD4x here; the later fill (SCD4x) wins
        assert s.value[wire.CH_CO2] == rec("scd4x", slot)["co2_ppm"]
        assert s.value[wire.CH_PM25] == int(rec("sds011", slot, "query")["pm25_ugm3"] + 0.5)
        t = rec("sht4x", slot)
        assert s.value[wire.CH_TEMP] == round(-4500 + 17500 * t["t_raw"] / 65535 + 1e-9)
        noise = [r["raw"] for r in truth if r["kind"] == "modbus_noise" and slot - 10 < r["t_virtual"] <= slot + 1]
        assert min(noise) <= s.value[wire.CH_NOISE] <= max(noise)
        assert s.value[wire.CH_NOISE_LMIN] >= min(noise) and s.value[wire.CH_NOISE_LMAX] <= max(noise)
    assert drivers["mhz19b"].frames_ok >= 3 and drivers["mhz19b"].checksum_errors == 0
