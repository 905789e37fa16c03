"""The firmware's checksums (on CPython) and the simulator's own implementations agree with the
known answers and with each other."""

from hypothesis import given, strategies as st

from envbox.firmware.drivers import checksums as fw
from envbox.simulator.models import _common as sim

from drivers_link import vectors


def test_known_answers_firmware_and_simulator():
    sim_impl = {"sensirion_crc8": sim.crc8_sensirion, "modbus_crc16": sim.crc16_modbus}
    for v in vectors("checksums")["vectors"]:
        b = bytes.fromhex(v["hex"])
        want = v["decoded"]["checksum"]
        assert getattr(fw, v["algo"])(b, 0, len(b)) == want, v["name"]
        if v["algo"] in sim_impl:
            assert sim_impl[v["algo"]](b) == want, v["name"]


@given(st.binary(min_size=7, max_size=7))
def test_winsen_frame_sums_to_zero(b7):
    f = sim.winsen_frame(*b7)
    assert sim.winsen_ok(f)
    assert fw.winsen_cs(f, 1, 8) == f[8]


@given(st.binary(max_size=64))
def test_crcs_agree(b):
    assert fw.sensirion_crc8(b, 0, len(b)) == sim.crc8_sensirion(b)
    assert fw.modbus_crc16(b, 0, len(b)) == sim.crc16_modbus(b)
    # a Modbus frame with its CRC appended has a CRC residue of 0
    f = sim.modbus_frame(b)
    assert fw.modbus_crc16(f, 0, len(f)) == 0
