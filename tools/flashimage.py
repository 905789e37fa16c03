"""Reads a box's flash image on the host, independently of the firmware's own code: the sim
board's flash.bin, or a dump of a device's flash (`esptool read_flash`, the same layout). The
journal ring on the ESP32 layout's raw partition is parsed from its documented format
(firmware/journal_ring.py's header comment), littlefs with littlefs-python (the C library the
MicroPython port uses, built for CPython), the journal's segment files from the record format.

The tests and `envbox chaos` use it to check what a box journaled; the firmware's parser is not
used here, so a bug in it cannot hide itself."""

from __future__ import annotations

import struct
from pathlib import Path

ESP32_VFS = (0x200000, 0x80000)
ESP32_JOURNAL = (0x280000, 0x180000)
PICO_VFS = (0, 848 * 1024)
SECTOR = 4096


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def records(data: bytes, start: int = 0, align: int = 1):
    """(seq, released, payload) of the intact records in data[start:] until the first bad one;
    payload b"" for a cursor mark."""
    p = start
    while p + 12 <= len(data) and data[p] == 0xEB:
        n = data[p + 1]
        if p + 12 + n > len(data):
            return
        seq, released = struct.unpack_from("<II", data, p + 2)
        crc = data[p + 10 + n] | data[p + 11 + n] << 8
        if crc != crc16(data[p + 1:p + 10 + n]):
            return
        yield seq, released, bytes(data[p + 10:p + 10 + n])
        p += (12 + n + align - 1) // align * align


def ring(image: Path, journal_bytes: int = 0) -> dict[int, bytes]:
    """seq -> payload of every intact sample record in the ESP32 layout's journal ring."""
    start, size = ESP32_JOURNAL
    if journal_bytes:
        size = journal_bytes // SECTOR * SECTOR
    data = Path(image).read_bytes()[start:start + size]
    out = {}
    for k in range(size // SECTOR):
        sec = data[k * SECTOR:(k + 1) * SECTOR]
        if sec[0:3] != b"\xe5\x4a\x01" or crc16(sec[:12]) != (sec[12] | sec[13] << 8):
            continue
        for seq, _rel, payload in records(sec, 16, 16):
            if payload:
                out[seq] = payload
    return out


def ring_state(image: Path, journal_bytes: int = 0) -> tuple[int, int]:
    """(next_seq, released) as the newest ring record says."""
    start, size = ESP32_JOURNAL
    if journal_bytes:
        size = journal_bytes // SECTOR * SECTOR
    data = Path(image).read_bytes()[start:start + size]
    best = (-1, 0, 0)
    for k in range(size // SECTOR):
        sec = data[k * SECTOR:(k + 1) * SECTOR]
        if sec[0:3] != b"\xe5\x4a\x01" or crc16(sec[:12]) != (sec[12] | sec[13] << 8):
            continue
        serial = struct.unpack_from("<I", sec, 4)[0]
        recs = list(records(sec, 16, 16))
        if recs and serial > best[0]:
            seq, rel, payload = recs[-1]
            best = (serial, seq + 1 if payload else seq, rel)
    return best[1], best[2]


def lfs_files(image: Path, layout: str = "esp32") -> dict[str, bytes]:
    """path -> content of every file in the image's littlefs partition."""
    from littlefs import LittleFS, UserContext
    start, size = ESP32_VFS if layout == "esp32" else PICO_VFS
    buf = bytearray(Path(image).read_bytes()[start:start + size])
    fs = LittleFS(context=UserContext(buffer=buf), block_size=SECTOR, block_count=size // SECTOR,
                  read_size=32, prog_size=32, lookahead_size=32, mount=True)
    out = {}

    def walk(d):
        for name in fs.listdir(d):
            p = (d.rstrip("/") + "/" + name)
            if fs.stat(p).type == 2:
                walk(p)
            else:
                with fs.open(p, "rb") as f:
                    out[p] = f.read()
    walk("/")
    return out


def journal(flash_dir: Path, layout: str = "esp32", journal_bytes: int = 0) -> dict[int, bytes]:
    """seq -> payload of what the box journaled, for either layout (or a host directory)."""
    flash_dir = Path(flash_dir)
    if layout == "host":
        out = {}
        for f in sorted((flash_dir / "journal").glob("*.jnl")):
            for seq, _rel, payload in records(f.read_bytes()):
                if payload:
                    out[seq] = payload
        return out
    image = flash_dir / "flash.bin"
    if layout == "esp32":
        return ring(image, journal_bytes)
    out = {}
    for name, data in sorted(lfs_files(image, layout).items()):
        if name.startswith("/journal/") and name.endswith(".jnl"):
            for seq, _rel, payload in records(data):
                if payload:
                    out[seq] = payload
    return out
