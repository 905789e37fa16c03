"""The ESP32 partition table the box needs: MicroPython's own 4 MB layout with its filesystem cut
to 512 KiB and a raw `journal` data partition of 1.5 MiB after it, where the journal ring writes
records in place (docs/firmware.md, "Flash"). The layout is the one the sim board emulates
(boards/simflash.py `LAYOUTS["esp32"]`), so the tests run the same partitions the box gets.

A stock MicroPython image carries its own table (its `vfs` partition takes all the space after
the app and `_boot.py` formats it); writing this table at 0x8000 after the image, before the
first boot, gives the firmware its `journal` partition (`esp32.Partition.find(TYPE_DATA,
label="journal")`; without it boards/esp32_lte.py keeps the journal in littlefs files).

    envbox partitions [--csv | --bin FILE]     print the CSV, or write the binary table

    esptool.py --chip esp32 write_flash 0x8000 partitions.bin    (after the MicroPython image)

Binary format (ESP-IDF's): 32-byte entries, little-endian: magic AA 50, type, subtype, offset
u32, size u32, label (16 bytes, NUL-padded), flags u32; then an MD5 entry (EB EB, 14 bytes FF,
the MD5 of the entries before it); 0xFF up to 0xC00 bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys

TABLE_OFFSET = 0x8000
TABLE_BYTES = 0xC00
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {("app", "factory"): 0x00, ("data", "phy"): 0x01, ("data", "nvs"): 0x02,
            ("data", "fat"): 0x81, ("data", "undefined"): 0x06}


def esp32_4mb() -> list[tuple[str, str, str, int, int]]:
    """(label, type, subtype, offset, size): MicroPython's 4 MB table with the box's journal."""
    from .boards.simflash import LAYOUTS
    size, parts = LAYOUTS["esp32"]
    sub = {"image": ("app", "factory"), "lfs": ("data", "fat"), "raw": ("data", "undefined")}
    out = [("nvs", "data", "nvs", 0x9000, 0x6000), ("phy_init", "data", "phy", 0xF000, 0x1000)]
    for label, start, psize, kind in parts:
        t, st = sub[kind]
        out.append((label, t, st, start, psize))
    end = max(o + s for _, _, _, o, s in out)
    if end > size:
        raise ValueError("partitions exceed the chip")
    return out


def table_bin(entries) -> bytes:
    out = bytearray()
    for label, t, st, off, size in entries:
        lb = label.encode()
        if len(lb) > 16:
            raise ValueError(f"label {label!r} longer than 16 bytes")
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", TYPES[t], SUBTYPES[(t, st)], off, size,
                           lb.ljust(16, b"\0"), 0)
    out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(bytes(out)).digest()
    if len(out) > TABLE_BYTES:
        raise ValueError("too many partitions")
    return bytes(out) + b"\xff" * (TABLE_BYTES - len(out))


def parse_bin(data: bytes) -> list[tuple[str, int, int, int, int]]:
    """(label, type, subtype, offset, size) of a binary table; ValueError if its MD5 is wrong."""
    out = []
    p = 0
    while p + 32 <= len(data):
        e = data[p:p + 32]
        if e[:2] == b"\xeb\xeb":
            if hashlib.md5(data[:p]).digest() != e[16:32]:
                raise ValueError("partition table MD5 mismatch")
            return out
        if e[:2] != b"\xaa\x50":
            break
        _m, t, st, off, size, label, _f = struct.unpack("<2sBBII16sI", e)
        out.append((label.rstrip(b"\0").decode(), t, st, off, size))
        p += 32
    raise ValueError("no MD5 entry: not a valid table")


def table_csv(entries) -> str:
    lines = ["# envbox: MicroPython's 4 MB ESP32 table, filesystem 512 KiB, raw journal 1.5 MiB",
             "# Name,   Type, SubType,   Offset,   Size"]
    for label, t, st, off, size in entries:
        lines.append(f"{label}, {t}, {st}, {off:#x}, {size:#x}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="envbox partitions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", metavar="FILE", help="write the binary table (for esptool at 0x8000)")
    a = ap.parse_args(argv)
    entries = esp32_4mb()
    if a.bin:
        with open(a.bin, "wb") as f:
            f.write(table_bin(entries))
        print(f"wrote {a.bin}: write it at {TABLE_OFFSET:#x} after the MicroPython image")
    else:
        sys.stdout.write(table_csv(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
