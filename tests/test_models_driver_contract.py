"""Every driver of this set keeps the firmware driver contract (docs/contracts.md): fill() writes
exactly its CHANNELS, never raises even when every bus call fails, and a failed answer is a
status, never a value."""

import pytest

from envbox.firmware import wire
from envbox.firmware.drivers.mhz19b import MHZ19B
from envbox.firmware.drivers.modbus_noise import ModbusNoise
from envbox.firmware.drivers.scd4x import SCD4x
from envbox.firmware.drivers.sds011 import SDS011
from envbox.firmware.drivers.sht3x import SHT3x
from envbox.firmware.drivers.sht4x import SHT4x
from envbox.firmware.drivers.ze03 import ZE03
from envbox.firmware.drivers.ze08 import ZE08


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


DRIVERS = [(ZE03, {"gas": g}) for g in ("o3", "no2", "so2", "co")] + [
    (ZE08, {}), (MHZ19B, {}), (SDS011, {}), (ModbusNoise, {}), (SHT4x, {}), (SHT3x, {}),
    (SCD4x, {}), (SCD4x, {"temp_rh": True})]


@pytest.mark.parametrize("cls,cfg", DRIVERS, ids=[c.__name__ + str(k) for c, k in DRIVERS])
def test_dead_bus_gives_statuses_not_values_and_never_raises(cls, cfg):
    d = cls(BrokenBus(), dict(cfg, warmup_ms=0))
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
