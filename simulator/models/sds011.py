"""Nova Fitness SDS011 laser PM sensor on a UART, 9600 8N1 (docs/sensors/sds011.md).

  data frame  AA C0 pm25L pm25H pm10L pm10H idL idH CS AB   (ug/m3 x10, little-endian)
  set reply   AA C5 cmd d1 d2 d3 idL idH CS AB              (answer to every 0xB4 set/get command)
  commands    AA B4 cmd d1..d12 idL idH CS AB, CS = sum(bytes 2..16) & 0xFF; id FF FF = any
Handled: 0x02 reporting mode (d1 = 0 query / 1 set, d2 = 0 active / 1 query), 0x04 query data,
0x06 sleep/work (d1 = 1 set, d2 = 0 sleep / 1 work), 0x08 working period (accepted, only
continuous modelled). Power-on: active reporting, one frame a second. After power-on or wake the
laser/fan need warmup_s, during which the model sends all-zero frames (ESPHome drops them as "not
yet valid data"). Query data in active mode is answered too.
"""

from . import SerialModel
from ._common import Faults, STATUS_OF, SensorModel, header_commands

DEVICE_ID = 0xD958      # the id of the PyPMS capture (docs/sensors/sds011.md)
RESPONSE_S = 0.05


def nova_sum(b):
    return sum(b) & 0xFF


def data_frame(pm25_x10, pm10_x10, device_id=DEVICE_ID):
    body = bytes((pm25_x10 & 0xFF, pm25_x10 >> 8, pm10_x10 & 0xFF, pm10_x10 >> 8,
                  device_id & 0xFF, device_id >> 8))
    return b"\xaa\xc0" + body + bytes((nova_sum(body), 0xAB))


def reply_frame(cmd, d1, d2, d3=0, device_id=DEVICE_ID):
    body = bytes((cmd, d1, d2, d3, device_id & 0xFF, device_id >> 8))
    return b"\xaa\xc5" + body + bytes((nova_sum(body), 0xAB))


def command(cmd, d1=0, d2=0, device_id=0xFFFF):
    body = bytes((cmd, d1, d2) + (0,) * 10 + (device_id & 0xFF, device_id >> 8))
    return b"\xaa\xb4" + body + bytes((nova_sum(body), 0xAB))


class SDS011(SensorModel, SerialModel):
    name = "sds011"
    TRUTH_TOLERANCE = 1     # tools/verify.py: 1 wire LSB (the driver rounds what the frame carries)

    def __init__(self, world=None, truth=None, seed=0, values=None, warmup_s=20.0,
                 active_period_s=1.0, device_id=DEVICE_ID):
        SerialModel.__init__(self)
        self._sensor_init(world, truth, seed, values, warmup_s, active_period_s)
        self.device_id = device_id
        self._rx = bytearray()
        self.query_mode = False
        self.asleep = False

    def start(self, t):
        self.t_on = t
        self.query_mode = False
        self.asleep = False
        self._next_active = t + self.active_period_s

    def tick(self, t):
        while self._next_active is not None and self._next_active <= t:
            ta = self._next_active
            self._next_active = ta + self.active_period_s
            if not self.query_mode and not self.asleep:
                self._answer(ta, "active")

    def next_tick(self):
        return None if (self.query_mode or self.asleep) else self._next_active

    def receive(self, data, t):
        self._rx += data
        for f in header_commands(self, self._rx, b"\xaa\xb4", 19,
                                 lambda f: f[18] == 0xAB and nova_sum(f[2:17]) == f[17]):
            dev = f[15] | (f[16] << 8)
            if dev not in (0xFFFF, self.device_id):
                self.count("commands_for_other_ids")
                continue
            self._command(f[2], f[3], f[4], t)

    def _command(self, cmd, d1, d2, t):
        if self.asleep and not (cmd == 0x06 and d1 == 1 and d2 == 1):
            self.count("commands_while_asleep")
            return
        if cmd == 0x02:
            if d1 == 1:
                self.query_mode = d2 == 1
                if not self.query_mode:
                    self._next_active = t + self.active_period_s
            self._reply(t, reply_frame(0x02, d1, 1 if self.query_mode else 0))
        elif cmd == 0x04:
            self.count("queries")
            self._answer(t, "query")
        elif cmd == 0x06:
            if d1 == 1:
                if d2 == 1 and self.asleep:
                    self.asleep = False
                    self.t_on = t
                    self._next_active = t + self.active_period_s
                elif d2 == 0:
                    self.asleep = True
            self._reply(t, reply_frame(0x06, d1, 0 if self.asleep else 1))
        elif cmd == 0x08:
            self._reply(t, reply_frame(0x08, d1, d2))
        else:
            self.count("unknown_commands")

    def _reply(self, t, frame):
        self.count("replies")
        self.emit(t + RESPONSE_S, frame)

    def _answer(self, t, mode):
        fs = self.faults.next()
        slot, world = self.values.at(t)
        warming = self.warming_up(t, fs)
        if warming:
            r = (0, 0)
        else:
            r = tuple(max(0, min(0xFFFF, int(round(float(world.get(k, 0.0)) * 10))))
                      for k in ("pm25_ugm3", "pm10_ugm3"))
        if "out_of_range" in fs:
            p = fs["out_of_range"]
            r = (12000, 15000) if p is True else (int(p), int(p))
        if "stuck" in fs and self._stuck is not None:
            r = self._stuck
        elif not warming and "out_of_range" not in fs:
            self._stuck = r
        out = self.faults.mangle(data_frame(r[0], r[1], self.device_id), 8, fs)
        if out:
            self.emit(t + RESPONSE_S + Faults.delay_s(fs), out)
            self.count("frames_sent")
        fault = Faults.main(fs)
        status = STATUS_OF[fault]
        if warming and status in ("ok", "out_of_range"):
            status = "warming_up"
        if self.truth is not None:
            rec = {"kind": self.name, "slot": slot, "t_virtual": round(t, 3), "status": status,
                   "fault": fault, "mode": mode}
            if fault != "silence":
                rec.update(pm25_ugm3=r[0] / 10, pm10_ugm3=r[1] / 10)
            self.truth.record(rec)
