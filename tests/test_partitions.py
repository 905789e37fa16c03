"""The ESP32 partition table the box needs (tools/partitions.py): ESP-IDF's binary format, the
same layout the sim board emulates, no overlaps, MicroPython's own entries kept."""

import hashlib
import struct

import pytest

from envbox import partitions
from envbox.boards.simflash import LAYOUTS


def test_binary_table_round_trips_with_its_md5():
    entries = partitions.esp32_4mb()
    b = partitions.table_bin(entries)
    assert len(b) == partitions.TABLE_BYTES
    got = partitions.parse_bin(b)
    assert [(g[0], g[3], g[4]) for g in got] == [(e[0], e[3], e[4]) for e in entries]
    # the layout of ESP-IDF's entries, checked by hand for the first one (nvs at 0x9000)
    assert b[:2] == b"\xaa\x50" and b[2] == 0x01 and b[3] == 0x02
    assert struct.unpack_from("<II", b, 4) == (0x9000, 0x6000)
    n = len(entries) * 32
    assert b[n:n + 2] == b"\xeb\xeb" and b[n + 16:n + 32] == hashlib.md5(b[:n]).digest()
    bad = bytearray(b)
    bad[5] ^= 1
    with pytest.raises(ValueError, match="MD5"):
        partitions.parse_bin(bytes(bad))


def test_layout_is_the_one_the_sim_board_runs():
    entries = {e[0]: e for e in partitions.esp32_4mb()}
    size, parts = LAYOUTS["esp32"]
    for label, start, psize, kind in parts:
        assert entries[label][3:] == (start, psize)
    assert entries["journal"][1:3] == ("data", "undefined")
    assert entries["vfs"][1:3] == ("data", "fat")       # MicroPython's _boot.py mounts it
    spans = sorted((e[3], e[3] + e[4]) for e in entries.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "no overlaps"
    assert spans[-1][1] <= size == 4 * 1024 * 1024
    assert spans[0][0] >= partitions.TABLE_OFFSET + 0x1000


def test_cli_writes_the_binary(tmp_path, capsys):
    out = tmp_path / "p.bin"
    assert partitions.main(["--bin", str(out)]) == 0
    assert partitions.parse_bin(out.read_bytes())[-1][0] == "journal"
    assert partitions.main([]) == 0
    assert "journal, data, undefined, 0x280000, 0x180000" in capsys.readouterr().out
