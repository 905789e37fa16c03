"""`envbox decode SENSOR FILE [--hex]`: decode a raw sensor capture with the box's own drivers.

The decoding runs under MicroPython (tools/decode_mp.py, spawned with the `micropython`
executable next to this Python), so a technician sees exactly what the firmware makes of the
bytes: the same frame parsers, resynchronisation, checksums, scaling and statuses. SENSOR is a
protocol of the registry of parts (firmware/drivers/registry.py, tools/parts.py). This side checks the
arguments and the input, then prints the JSON lines the MicroPython side writes, with a stable
key order.

Output: one JSON object per frame, NMEA sentence, combined GNSS fix or I2C read, each with `ok`
(the frame passed its checksum), `status` (the wire status the box would send for it) and the
decoded values with units in the key names; then one summary object
`{"summary": true, "frames_ok": n, "checksum_errors": n, "bytes_skipped": n, ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import mpybuild, parts

REPO = Path(__file__).resolve().parent.parent
MP_SCRIPT = REPO / "tools" / "decode_mp.py"

SENSORS = parts.protocols()
GASES = tuple(p.cfg["gas"] for p in parts.by_protocol("ze03"))

# keys first in every record, in this order; the rest alphabetical, raw bytes last
_FIRST = ("summary", "sensor", "ok", "kind", "type", "status", "error", "detail", "line", "read",
          "offset")
_LAST = ("hex", "text")

EXIT_USAGE = 2

DESCRIPTION = """\
Decode a raw capture of one sensor's output with the box's own drivers (run under MicroPython).

FILE holds the bytes as captured from the module's UART (e.g. `cat /dev/ttyUSB0 > cap.bin`, or a
logic analyser's export); with --hex it holds hex text, one frame or I2C read per line (spaces
and colons allowed, blank lines and lines starting with # ignored). For the I2C parts (scd4x,
sht3x, sht4x) a raw FILE is the reads back to back (9 bytes SCD4x, 6 bytes SHT); with --hex an
SCD4x line may also be a 3-byte get_data_ready_status read.

Prints one JSON object per frame / sentence / read, then a summary object."""


def micropython_exe() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(cand):
        return cand
    found = shutil.which("micropython")
    if found:
        return found
    raise FileNotFoundError("micropython (the MicroPython Unix port) is not installed next to "
                            f"{sys.executable} nor on PATH")


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="envbox decode", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sensor", metavar="SENSOR", help="one of: " + ", ".join(SENSORS))
    p.add_argument("file", metavar="FILE", help="capture file (raw bytes, or hex text with --hex)")
    p.add_argument("--hex", action="store_true", help="FILE is hex text, one frame or read per line")
    p.add_argument("--gas", choices=GASES,
                   help="ze03: which module (default: the gas whose frames decode, tried in turn)")
    p.add_argument("--address", type=int, default=None,
                   help="modbus: slave address of the replies (default 1)")
    p.add_argument("--function", type=int, choices=(3, 4), default=None,
                   help="modbus: function code of the replies (default: 03 or 04, whichever decodes)")
    p.add_argument("--scale-div", type=int, default=None,
                   help="modbus: register units per dB (default 10)")
    return p


def check_hex(path: Path) -> int:
    """Every non-blank, non-comment line is an even number of hex digits. Returns the count of
    lines holding data; raises UsageError naming the first bad line."""
    n = 0
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not hex text (byte {e.start} is not ASCII); "
                         "drop --hex for a raw capture") from None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        h = s.replace(" ", "").replace(":", "").replace("\t", "")
        try:
            bytes.fromhex(h)
        except ValueError:
            raise UsageError(f"{path}:{i}: not hex bytes: {s[:60]!r}") from None
        if not h:
            continue
        n += 1
    return n


def _order(rec: dict) -> dict:
    out = {k: rec[k] for k in _FIRST if k in rec}
    for k in sorted(rec):
        if k not in out and k not in _LAST:
            out[k] = rec[k]
    for k in _LAST:
        if k in rec:
            out[k] = rec[k]
    for k, v in out.items():
        # MicroPython prints some doubles with one digit too many (67.40000000000001); every
        # value here is a scaled integer with at most 7 decimals (degrees x1e7)
        if isinstance(v, float):
            out[k] = round(v, 7)
    return out


def run(sensor: str, path: Path, hex_mode: bool, opts: dict, out=None) -> int:
    out = out or sys.stdout
    env = dict(os.environ, MICROPYPATH=f"{mpybuild.source_root()}:.frozen")
    args = [micropython_exe(), "-X", "heapsize=8m", str(MP_SCRIPT), sensor, str(path),
            "hex" if hex_mode else "raw"]
    args += [f"{k}={v}" for k, v in opts.items() if v is not None]
    p = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    summary_seen = False
    for line in p.stdout:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            print(f"envbox decode: unexpected output from the MicroPython decoder: {line[:200]}",
                  file=sys.stderr)
            continue
        summary_seen = summary_seen or bool(rec.get("summary"))
        out.write(json.dumps(_order(rec)) + "\n")
    err = p.stderr.read()
    rc = p.wait()
    if rc != 0 or not summary_seen:
        sys.stderr.write(err)
        print(f"envbox decode: the MicroPython decoder failed (exit {rc})", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:           # argparse: --help exits 0, a usage error 2
        return int(e.code or 0)
    try:
        sensor = a.sensor.lower()
        if sensor not in SENSORS:
            raise UsageError(f"unknown sensor {a.sensor!r}; one of: {', '.join(SENSORS)}")
        path = Path(a.file)
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"{path}: not readable")
        if a.hex:
            check_hex(path)
        opts = {}
        if sensor == "ze03" and a.gas:
            opts["gas"] = a.gas
        if sensor == "modbus":
            if a.address is not None:
                if not 1 <= a.address <= 247:
                    raise UsageError("--address: a Modbus slave address is 1..247")
                opts["address"] = a.address
            opts["function"] = a.function
            if a.scale_div is not None:
                if a.scale_div < 1:
                    raise UsageError("--scale-div must be at least 1")
                opts["scale_div"] = a.scale_div
        micropython_exe()              # fail here, with the usage errors, if it is missing
    except UsageError as e:
        print(f"envbox decode: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as e:
        print(f"envbox decode: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run(sensor, path, a.hex, opts)


if __name__ == "__main__":
    sys.exit(main())
