"""Every part of the registry (firmware/drivers/registry.py, read through tools/parts.py) keeps the
firmware driver contract (docs/contracts.md) and has what adding a part asks for: a driver, a
simulator model answering under the part's name, a vector file, a protocol page and a decoder.
fill() writes exactly its CHANNELS, never raises even when every bus call fails, and a failed
answer is a status, never a value."""

import json
import os
import subprocess
import sys

import pytest

from envbox import parts
from envbox.firmware import wire

ENVBOX = os.path.join(os.path.dirname(sys.executable), "envbox")
SENSORS = [p for p in parts.PARTS.values() if p.name != "gnss"]     # the sampler's drivers


class BrokenBus:
    """UART and I2C at once; every call fails like a disconnected device or a dead bus."""

    def any(self):
        raise OSError(5)

    def readinto(self, buf, nbytes=None):
        raise OSError(5)

    def write(self, b):
        raise OSError(5)

    def writeto(self, addr, buf):
        raise OSError(19)

    def readfrom_into(self, addr, buf):
        raise OSError(19)


DRIVERS = [(p, {}) for p in SENSORS] + [(parts.get("scd4x"), {"temp_rh": True})]


@pytest.mark.parametrize("part,cfg", DRIVERS, ids=[p.name + str(c) for p, c in DRIVERS])
def test_dead_bus_gives_statuses_not_values_and_never_raises(part, cfg):
    d = part.make(BrokenBus(), dict(cfg, warmup_ms=0))
    d.start(0)
    for t in range(0, 60000, 250):
        d.poll(t)
    seen = set()
    for k in range(1, 4):
        t = 60000 + k * 10000
        d.request(t)
        for dt in range(0, 1100, 100):
            d.poll(t + dt)
        d.ready()
        s = wire.Sample(b"t")
        d.fill(s, t + 1100)
        fitted = {i for i in range(wire.N_CHANNELS) if s.status[i] != wire.STATUS_NOT_FITTED}
        assert fitted == set(d.CHANNELS)
        for ch in d.CHANNELS:
            assert not wire.status_has_value(s.status[ch])
            assert s.value[ch] == 0
            seen.add(wire.STATUS_NAMES[s.status[ch]])
    assert seen <= {"no_data", "warming_up"}
    for name in ("frames_ok", "checksum_errors", "bytes_skipped", "timeouts"):
        assert isinstance(getattr(d, name), int)
    assert d.frames_ok == 0


@pytest.mark.parametrize("part", list(parts.PARTS.values()), ids=list(parts.PARTS))
def test_each_part_has_its_driver_model_vectors_page_and_registry_line(part):
    d = part.make(None)
    assert type(d) is part.driver_class()
    if part.bus == "i2c":
        assert d.address == part.address        # the driver's default is the registry's
    else:
        assert part.address is None
    # the model answers under the part's name: its ground-truth kind, its sim.json key
    model = part.model_class()(None, None, **part.model_kwargs())
    assert model.name == part.name
    v = json.loads(part.vectors.read_text())
    assert v["vectors"] and part.page.exists(), part.page
    assert f"docs/sensors/{part.page.name}" in part.driver_module_text()
    if part.name != "gnss":
        assert part.channels and set(part.channels) <= {n for n, _ in wire.CHANNELS}


@pytest.mark.parametrize("protocol", parts.protocols())
def test_envbox_decode_knows_every_protocol_of_the_registry(tmp_path, protocol):
    v = json.loads(parts.by_protocol(protocol)[0].vectors.read_text())
    cap = tmp_path / "cap.hex"
    cap.write_text("\n".join(x["hex"] for x in v["vectors"]) + "\n")
    r = subprocess.run([ENVBOX, "decode", protocol, str(cap), "--hex"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["sensor"] == protocol and summary["frames_ok"] > 0
