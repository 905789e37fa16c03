"""RS485 Modbus RTU sound-level transmitter (Renke RS-ZS-N01 style; docs/sensors/modbus_noise.md).

A Modbus RTU slave: address 1, 4800 baud, function 03 (optionally 04 too), one register at
0x0000 holding dB(A) x10 (all configurable). Requests `[addr] [func] [regH regL] [countH countL]
[crcL crcH]`; replies `[addr] [func] [2*count] [values...] [crcL crcH]`; exceptions
`[addr] [func|0x80] [code] [crc]` (01 illegal function, 02 illegal data address, 03 illegal
data value). Like a real slave it stays silent on a request with a bad CRC or another address.
An RTU frame ends with >= 3.5 character times of silence; the model treats every complete
request it can parse as a frame (the pty carries no timing).

The reading: the world's noise level at the 10 s slot plus seeded Gaussian fluctuation
(sigma_db; real street noise is never constant, and it is what makes LAeq differ from the
arithmetic mean), quantised to the register's 0.1 dB. Ground truth: one record per answered
read with the register value (the integers a perfect decoder gets).
"""

import random

from . import SerialModel
from ._common import Faults, STATUS_OF, SensorModel, crc16_modbus, modbus_frame

RESPONSE_S = 0.03


def request_frame(address, function, register, count=1):
    return modbus_frame(bytes((address, function, register >> 8, register & 0xFF, count >> 8, count & 0xFF)))


def reply_frame(address, function, values):
    body = bytearray((address, function, 2 * len(values)))
    for v in values:
        body += bytes(((v >> 8) & 0xFF, v & 0xFF))
    return modbus_frame(body)


def exception_frame(address, function, code):
    return modbus_frame(bytes((address, function | 0x80, code)))


class ModbusNoise(SensorModel, SerialModel):
    name = "modbus_noise"

    def __init__(self, world=None, truth=None, seed=0, values=None, address=1, register=0,
                 functions=(3,), scale=10, sigma_db=2.0, n_registers=1):
        SerialModel.__init__(self)
        self._sensor_init(world, truth, seed, values, 0.0, None)
        self.address = address
        self.register = register
        self.functions = tuple(functions)
        self.scale = scale
        self.sigma_db = sigma_db
        self.n_registers = n_registers
        self._rng = random.Random("modbus_noise:%s" % seed)
        self._rx = bytearray()
        self._stuck = None

    def receive(self, data, t):
        rx = self._rx
        rx += data
        # A request is 8 bytes; find one whose CRC checks, skipping bytes one at a time.
        while len(rx) >= 8:
            if crc16_modbus(rx[:8]) != 0:
                self.count("bytes_ignored")
                del rx[:1]
                continue
            f = bytes(rx[:8])
            del rx[:8]
            self._request(f, t)
        if len(rx) > 64:
            self.count("bytes_ignored", len(rx) - 7)
            del rx[:-7]

    def _request(self, f, t):
        addr, func = f[0], f[1]
        if addr != self.address:
            self.count("requests_for_other_addresses")
            return
        reg = (f[2] << 8) | f[3]
        n = (f[4] << 8) | f[5]
        if func not in self.functions:
            self.count("exceptions")
            self.emit(t + RESPONSE_S, exception_frame(addr, func, 1))
            return
        if n < 1 or n > 125:
            self.count("exceptions")
            self.emit(t + RESPONSE_S, exception_frame(addr, func, 3))
            return
        if reg < self.register or reg + n > self.register + self.n_registers:
            self.count("exceptions")
            self.emit(t + RESPONSE_S, exception_frame(addr, func, 2))
            return
        self.count("reads")
        self._answer(func, n, t)

    def _answer(self, func, n, t):
        fs = self.faults.next()
        slot, world = self.values.at(t)
        level = float(world.get("noise_dba", 55.0))
        if self.sigma_db:
            level += self._rng.gauss(0.0, self.sigma_db)
        raw = max(0, min(0xFFFF, int(round(level * self.scale))))
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            raw = 140 * self.scale if p is True else int(p)
        if "stuck" in fs and self._stuck is not None:
            raw = self._stuck
        elif "out_of_range" not in fs:
            self._stuck = raw
        frame = reply_frame(self.address, func, [raw] * n)
        out = self.faults.mangle(frame, len(frame) - 1, fs)
        if out:
            self.emit(t + RESPONSE_S + Faults.delay_s(fs), out)
            self.count("answers")
        fault = Faults.main(fs)
        if self.truth is not None:
            rec = {"kind": self.name, "slot": slot, "t_virtual": round(t, 3),
                   "status": STATUS_OF[fault], "fault": fault}
            if fault != "silence":
                rec.update(raw=raw, noise_dba=raw / self.scale)
            self.truth.record(rec)
