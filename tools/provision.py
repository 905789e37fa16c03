"""`envbox flash BOARD --device-id ID [...] [--port PORT]`: build a device image and, with --port,
copy it to a MicroPython board with mpremote.

The image is what runs on the box (firmware/main.py explains the layout):

    /main.py             firmware/main.py (source: MicroPython runs main.py as text)
    /board.mpy           boards/<BOARD>.py compiled: `import board` finds it
    /config.json         this device's settings (device id, broker, network, modules)
    /lib/firmware/...    the firmware package, compiled with mpy-cross (RAM: no compile on device)
    /lib/boards/...      boards/__init__ and boards/buses (the bus classes the board imports)

With --romfs the firmware package (/lib) goes into a ROMFS image (`romfs.img` beside the staged
files, built by `mpremote romfs build`) instead of the filesystem: a MicroPython 1.25+ image with
a ROMFS partition runs its bytecode in place from flash, so it takes no heap (about half of what
the firmware's modules otherwise cost: docs/firmware.md, "Memory"). Stock ESP32 and RP2 images
have no ROMFS partition; a custom build can instead freeze the package (firmware/manifest.py).

Without --port the image is only staged in --out (default ./envbox-image-<device id>), for
inspection or for copying with another tool. With --port, `mpremote` (PyPI: mpremote; not a
dependency of envbox, install it on the technician's machine) copies the image and resets the
board.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .mpybuild import REPO, build

BOARDS = ("esp32_lte", "pico_w")
EXIT_USAGE = 2


class UsageError(Exception):
    pass


def check_device_id(dev: str) -> str:
    b = dev.encode("ascii", "replace")
    if not 1 <= len(b) <= 32:
        raise UsageError("device id: 1..32 bytes")
    if any(c < 0x21 or c > 0x7E or c in b"/+#?" for c in b):
        raise UsageError(f"device id {dev!r}: printable ASCII without spaces, / + #")
    return dev


def check_broker(s: str) -> str:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"broker {s!r}: expected HOST:PORT")
    return s


def config_for(a) -> dict:
    cfg = {}
    if a.config:
        try:
            cfg = json.loads(Path(a.config).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--config {a.config}: {e}") from None
        if not isinstance(cfg, dict):
            raise UsageError(f"--config {a.config}: a JSON object expected")
    cfg["device_id"] = check_device_id(a.device_id)
    cfg["broker"] = check_broker(a.broker)
    if a.board == "pico_w":
        if a.wifi_ssid:
            cfg["wifi_ssid"] = a.wifi_ssid
            cfg["wifi_password"] = a.wifi_password or ""
        if "wifi_ssid" not in cfg:
            raise UsageError("pico_w needs --wifi-ssid (or wifi_ssid in --config)")
    if a.board == "esp32_lte":
        if a.modem:
            cfg["modem"] = a.modem
        if a.apn is not None:
            cfg["apn"] = a.apn
        if "apn" not in cfg:
            raise UsageError("esp32_lte needs --apn (the SIM's access point name)")
    if a.modules:
        cfg["modules"] = [m.strip() for m in a.modules.split(",") if m.strip()]
    return cfg


def stage(board: str, cfg: dict, out: Path, build_dir: Path, safe_mode: bool = False) -> list[Path]:
    """Write the image into `out`; return its files (relative paths)."""
    build(build_dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "lib" / "firmware").mkdir(parents=True)
    (out / "lib" / "boards").mkdir(parents=True)
    shutil.copy(REPO / "firmware" / "main.py", out / "main.py")
    shutil.copy(build_dir / "boards" / f"{board}.mpy", out / "board.mpy")
    for name in ("__init__.mpy", "buses.mpy"):
        shutil.copy(build_dir / "boards" / name, out / "lib" / "boards" / name)
    for src in sorted((build_dir / "firmware").rglob("*.mpy")):
        rel = src.relative_to(build_dir / "firmware")
        if rel.name == "main.mpy":
            continue
        dst = out / "lib" / "firmware" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    (out / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    if safe_mode:
        (out / "safe_mode").write_text("")
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def romfs_image(out: Path, image: Path) -> Path:
    """A ROMFS image of the staged /lib (firmware and bus modules, already .mpy), built with
    mpremote (`romfs build`; ROMFS mounts at /rom and MicroPython puts /rom/lib on sys.path)."""
    exe = mpremote_exe()
    if exe is None:
        raise RuntimeError("--romfs needs mpremote (PyPI mpremote)")
    src = image.parent / (image.name + ".src")
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(out / "lib", src / "lib")
    r = subprocess.run([exe, "romfs", "--no-mpy", "-o", str(image), "build", str(src)],
                       capture_output=True, text=True)
    shutil.rmtree(src)
    if r.returncode != 0 or not image.exists():
        raise RuntimeError(f"mpremote romfs build failed: {r.stderr.strip() or r.stdout[-400:]}")
    return image


def mpremote_exe() -> str | None:
    cand = os.path.join(os.path.dirname(sys.executable), "mpremote")
    return cand if os.path.exists(cand) else shutil.which("mpremote")


def copy_commands(exe: str, port: str, out: Path, romfs: Path | None = None) -> list[str]:
    """One mpremote invocation: the image's files to the board's filesystem (and the ROMFS
    image to its ROMFS partition), then a reset."""
    cmd = [exe, "connect", port]
    if romfs is not None:
        cmd += ["romfs", "deploy", str(romfs), "+"]
    else:
        cmd += ["fs", "cp", "-r", str(out / "lib"), ":", "+"]
    for name in ("main.py", "board.mpy", "config.json", "safe_mode"):
        if name == "safe_mode" and not (out / name).exists():
            continue
        cmd += ["fs", "cp", str(out / name), ":" + name, "+"]
    cmd += ["reset"]
    return cmd


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="envbox flash", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("board", choices=BOARDS)
    p.add_argument("--device-id", required=True)
    p.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker")
    p.add_argument("--apn", help="esp32_lte: the SIM's APN")
    p.add_argument("--modem", choices=("sim7600", "a7670"),
                   help="esp32_lte: LilyGO T-SIM7600X (default) or T-A7670X (their modem pins "
                        "differ)")
    p.add_argument("--safe-mode", action="store_true",
                   help="also write /safe_mode: the box starts no app and leaves the REPL free "
                        "(remove with `mpremote fs rm :safe_mode`)")
    p.add_argument("--wifi-ssid", help="pico_w: Wi-Fi network")
    p.add_argument("--wifi-password", help="pico_w: Wi-Fi password")
    p.add_argument("--modules", help="comma-separated modules fitted (default: the full kit)")
    p.add_argument("--config", help="JSON file with more settings (e.g. per-module driver cfg)")
    p.add_argument("--out", help="staging directory (default ./envbox-image-<device id>)")
    p.add_argument("--port", help="serial port of the board: copy the image with mpremote")
    p.add_argument("--romfs", action="store_true",
                   help="put the firmware package in a ROMFS image (bytecode runs from flash; "
                        "needs a MicroPython image with a ROMFS partition)")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        cfg = config_for(a)
        exe = None
        if a.port:
            exe = mpremote_exe()
            if exe is None:
                raise UsageError("--port needs mpremote (pip install mpremote)")
    except UsageError as e:
        print(f"envbox flash: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(a.out or f"envbox-image-{a.device_id}")
    try:
        files = stage(a.board, cfg, out, out.parent / (out.name + ".build"), a.safe_mode)
    except RuntimeError as e:           # mpy-cross refused a file
        print(f"envbox flash: {e}", file=sys.stderr)
        return 1
    romfs = None
    if a.romfs:
        try:
            romfs = romfs_image(out, out / "romfs.img")
        except RuntimeError as e:
            print(f"envbox flash: {e}", file=sys.stderr)
            return 1
    total = sum((out / f).stat().st_size for f in files)
    shown = {k: ("***" if "password" in k or k == "sim_pin" else v) for k, v in cfg.items()}
    summary = {"board": a.board, "image": str(out), "files": len(files), "bytes": total,
               "config": shown}
    if romfs is not None:
        summary["romfs"] = {"image": str(romfs), "bytes": romfs.stat().st_size}
    print(json.dumps(summary, sort_keys=True))
    if exe is None:
        return 0
    cmd = copy_commands(exe, a.port, out, romfs)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        print(f"envbox flash: mpremote failed (exit {r.returncode}): {' '.join(cmd)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
