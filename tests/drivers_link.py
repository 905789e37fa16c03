"""Host-side harness for the model/driver tests (tests/test_models_*.py): connects a firmware
driver (imported on CPython as envbox.firmware.drivers.<part>) to its simulator model through a
bus object with the machine API, on an explicit virtual clock. No threads, no sleeps."""

import json
from pathlib import Path

from envbox.firmware import wire

T0_S = 1764290000            # virtual Unix time of tick 0 (on the 10 s grid)
VECTORS = Path(__file__).resolve().parent / "vectors"


def vectors(name):
    return json.loads((VECTORS / (name + ".json")).read_text())


class SerialLink:
    """UART for the driver; the other end is a simulator SerialModel."""

    def __init__(self, model, start=True):
        self.model = model
        self.t_ms = 0
        self.rx = bytearray()
        self.written = bytearray()
        self.noise = None          # optional callable(bytes) -> bytes applied to model output
        if start:
            model.start(self.t_s())

    def t_s(self):
        return T0_S + self.t_ms / 1000.0

    def _pull(self):
        out = self.model.due(self.t_s())
        if out:
            self.rx += self.noise(out) if self.noise else out

    def any(self):
        self._pull()
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        self._pull()
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, b):
        self.written += b
        self.model.receive(bytes(b), self.t_s())
        return len(b)


class I2CLink:
    """machine.I2C for the driver; the devices are simulator I2CModels by 7-bit address."""

    def __init__(self, models):
        self.models = dict(models)
        self.t_ms = 0

    def t_s(self):
        return T0_S + self.t_ms / 1000.0

    def writeto(self, addr, buf, stop=True):
        m = self.models.get(addr)
        if m is None or not m.write(bytes(buf), self.t_s()):
            raise OSError(19)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        m = self.models.get(addr)
        out = None if m is None else m.read(len(buf), self.t_s())
        if out is None:
            raise OSError(19)
        assert len(out) == len(buf)
        buf[:] = out


def sample(drv, link, t_ms, deadline_ms=1000, step_ms=20):
    """What the sampler does at one sample time: request, poll until ready or the deadline, fill."""
    link.t_ms = t_ms
    drv.request(t_ms)
    t = t_ms
    while True:
        drv.poll(t)
        if drv.ready() or t - t_ms >= deadline_ms:
            break
        t += step_ms
        link.t_ms = t
    s = wire.Sample(b"t")
    drv.fill(s, t)
    return s


def idle(drv, link, t_from_ms, t_to_ms, step_ms=100):
    """Poll between sample times, as the sampler's loop does."""
    t = t_from_ms
    while t < t_to_ms:
        link.t_ms = t
        drv.poll(t)
        t += step_ms
    link.t_ms = t_to_ms


def status_name(s, ch):
    return wire.STATUS_NAMES[s.status[ch]]


class Recorder:
    """A GroundTruth stand-in that keeps records in memory."""

    def __init__(self):
        self.records = []

    def record(self, obj):
        self.records.append(dict(obj))

    def last(self, kind=None):
        for r in reversed(self.records):
            if kind is None or r.get("kind") == kind:
                return r
        return None


class BufUART:
    """A UART whose receive side is a byte buffer the test appends to (`data`), handed out
    `chunk` bytes per readinto (split frames); writes are kept in `written`."""

    def __init__(self, data=b"", chunk=64):
        self.data = bytearray(data)
        self.chunk = chunk
        self.written = bytearray()

    def any(self):
        return len(self.data)

    def readinto(self, buf, nbytes=None):
        n = min(len(buf) if nbytes is None else nbytes, len(self.data), self.chunk)
        if not n:
            return None
        buf[:n] = self.data[:n]
        del self.data[:n]
        return n

    def write(self, b):
        self.written += b
        return len(b)
