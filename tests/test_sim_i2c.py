"""simulator/i2c_bridge.py over its real Unix socket, with a trivial register-file model."""

import errno
import socket
import struct

import pytest

from envbox.simulator.clock import VirtualClock
from envbox.simulator.i2c_bridge import BAD_REQUEST, I2CBridge, I2CBridgeClient
from envbox.simulator.models import I2CModel


class Registers(I2CModel):
    """Write [reg, data...] stores data at reg; a write of [reg] sets the read pointer.
    Register 0xFF refuses everything (a busy device: data NACK). Reads return time too."""

    def __init__(self):
        super().__init__()
        self.mem = bytearray(256)
        self.ptr = 0
        self.last_t = None

    def write(self, data, t):
        self.last_t = t
        if not data:
            return True          # address probe
        if data[0] == 0xFF:
            return False
        self.ptr = data[0]
        for i, b in enumerate(data[1:]):
            self.mem[(self.ptr + i) & 0xFF] = b
        return True

    def read(self, n, t):
        out = bytes(self.mem[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out


class Broken(I2CModel):
    def read(self, n, t):
        raise RuntimeError("model bug")


@pytest.fixture
def bridge(tmp_path):
    b = I2CBridge(tmp_path / "i2c.sock", VirtualClock(1_764_300_000, warp=60))
    b.add(0x44, Registers())
    b.add(0x62, Broken())
    b.start()
    yield b
    b.stop()


def test_write_then_read_back(bridge):
    c = I2CBridgeClient(bridge.path)
    assert c.writeto(0x44, b"\x10\xbe\xef\x92") == 4
    c.writeto(0x44, b"\x10")
    buf = bytearray(3)
    c.readfrom_into(0x44, buf)
    assert buf == b"\xbe\xef\x92"
    assert c.readfrom(0x44, 0) == b""
    assert bridge.models[0x44].last_t >= 1_764_300_000
    c.close()


def test_nacks_are_oserrors(bridge):
    c = I2CBridgeClient(bridge.path)
    with pytest.raises(OSError) as e:
        c.writeto(0x45, b"\x00")
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        c.writeto(0x44, b"\xff\x00")
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError) as e:       # a model that raises is a data NACK, bridge survives
        c.readfrom(0x62, 2)
    assert e.value.errno == errno.EIO
    assert bridge.counters["model_errors"] == 1
    assert c.scan() == [0x44, 0x62]
    c.writeto(0x44, b"\x00\x01")            # the connection still works
    c.close()


def test_bad_request_closes_only_that_connection(bridge):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(bridge.path)
    s.sendall(struct.pack(">BBH", 0x58, 0x44, 0))     # unknown op 'X'
    assert s.recv(3) == struct.pack(">BH", BAD_REQUEST, 0)
    assert s.recv(1) == b""                             # closed
    s.close()
    c = I2CBridgeClient(bridge.path)
    c.writeto(0x44, b"\x01")
    c.close()
    assert bridge.counters["bad_requests"] == 1


def test_two_clients_share_the_bus(bridge):
    a, b = I2CBridgeClient(bridge.path), I2CBridgeClient(bridge.path)
    a.writeto(0x44, b"\x20\x55")
    b.writeto(0x44, b"\x20")
    assert b.readfrom(0x44, 1) == b"\x55"
    a.close()
    b.close()
