"""`envbox flash --fleet DIR --device-id ID [--port PORT] [--micropython FILE]`: build a box's
image from its provisioned settings (tools/fleet.py, `envbox provision`) and, with --port, check
the board and copy the image to it with mpremote. (`envbox flash BOARD --device-id ID --broker
H:P [--insecure]` still builds an image without a fleet, for a development broker.)

The image is what runs on the box (firmware/main.py explains the layout):

    /main.py             firmware/main.py (source: MicroPython runs main.py as text)
    /board.mpy           boards/<BOARD>.py compiled: `import board` finds it
    /config.json         this device's settings (device id, broker, network, modules, and from
                         the fleet: its login password, the CA certificate, its config key)
    /lib/envbox/__init__.mpy      empty: the package the host calls envbox, under the same name
    /lib/envbox/firmware/...      the firmware package (envbox.firmware), compiled with mpy-cross
                                  (RAM: no compile on device)
    /lib/envbox/boards/...        boards/__init__ and boards/buses (envbox.boards.buses, the bus
                                  classes the board imports)

With --romfs the firmware package (/lib) goes into a ROMFS image (`romfs.img` beside the staged
files, built by `mpremote romfs build`) instead of the filesystem: a MicroPython 1.25+ image with
a ROMFS partition runs its bytecode in place from flash, so it takes no heap (about half of what
the firmware's modules otherwise cost: docs/firmware.md, "Memory"). Stock ESP32 and RP2 images
have no ROMFS partition; a custom build can instead freeze the package (firmware/manifest.py).

Without --port the image is only staged in --out (default ./envbox-image-<device id>), for
inspection or for copying with another tool. With --port (mpremote, PyPI: mpremote, on the
technician's machine: `pip install envbox[bench]`):

  1. --micropython FILE: the MicroPython image the technician downloaded is written first
     (esptool for the ESP32, a UF2 copy for the Pico W), only if its sha256 is the fleet's pinned
     one (tools/flashimg.py);
  2. the board's MicroPython version, port and .mpy ABI are read (one `mpremote exec`) and the
     copy refused if the image cannot run there;
  3. files of an earlier image that this one no longer has are removed (never /data: the
     journal), the image copied, the board reset; the fleet's inventory records what was
     flashed and when.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import flashimg
from .fleet import Fleet, UsageError, check_broker, check_device_id, firmware_version, now_iso
from .flashimg import FlashError
from .mpybuild import PACKAGE, REPO, build

BOARDS = ("esp32_lte", "pico_w")
EXIT_USAGE = 2
SECRET_KEYS = ("password", "sim_pin", "config_key")


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
    if a.insecure:
        cfg["insecure"] = True
    elif not (cfg.get("mqtt_password") and cfg.get("ca_pem")):
        raise UsageError("no broker login and CA for this box: provision it (`envbox provision`, "
                         "then `envbox flash --fleet DIR`), or --insecure for a development "
                         "broker (the box then connects without TLS or login and says so)")
    return cfg


def config_from_fleet(a) -> tuple[Fleet, str, dict]:
    """(fleet, board, config.json) of a provisioned box."""
    for opt in ("broker", "apn", "modem", "wifi_ssid", "wifi_password", "modules", "config"):
        if getattr(a, opt):
            raise UsageError(f"--{opt.replace('_', '-')} with --fleet: the box's settings come "
                             "from the fleet (change the CSV and run `envbox provision` again)")
    if a.insecure:
        raise UsageError("--insecure with --fleet: a provisioned box has its login and CA")
    fleet = Fleet(a.fleet)
    dev = check_device_id(a.device_id)
    cfg = fleet.box_config(dev)
    board = fleet.inventory.get(dev, {}).get("board")
    if board not in BOARDS:
        raise UsageError(f"{dev}: board {board!r} in the fleet's inventory; `envbox flash` "
                         f"writes {', '.join(BOARDS)}")
    if a.board and a.board != board:
        raise UsageError(f"{dev} is a {board} in the fleet, not a {a.board}")
    return fleet, board, cfg


def stage(board: str, cfg: dict, out: Path, build_dir: Path, safe_mode: bool = False) -> list[Path]:
    """Write the image into `out`; return its files (relative paths)."""
    build(build_dir)
    if out.exists():
        shutil.rmtree(out)
    pkg = build_dir / PACKAGE           # the build: envbox/{__init__, firmware/, boards/}.mpy
    lib = out / "lib" / PACKAGE         # the box: the same package name as on the host
    (lib / "firmware").mkdir(parents=True)
    (lib / "boards").mkdir(parents=True)
    shutil.copy(REPO / "firmware" / "main.py", out / "main.py")
    shutil.copy(pkg / "boards" / f"{board}.mpy", out / "board.mpy")
    shutil.copy(pkg / "__init__.mpy", lib / "__init__.mpy")
    for name in ("__init__.mpy", "buses.mpy"):
        shutil.copy(pkg / "boards" / name, lib / "boards" / name)
    for src in sorted((pkg / "firmware").rglob("*.mpy")):
        rel = src.relative_to(pkg / "firmware")
        if rel.name == "main.mpy":
            continue
        dst = lib / "firmware" / rel
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


def copy_commands(exe: str, port: str, out: Path, romfs: Path | None = None,
                  stale: list[str] = ()) -> list[str]:
    """One mpremote invocation: remove the `stale` files (an earlier image's, which this one
    does not have), copy the image's files to the board's filesystem (and the ROMFS image to its
    ROMFS partition), then a reset."""
    cmd = [exe, "connect", port]
    for f in stale:
        cmd += ["fs", "rm", ":" + f, "+"]
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


def image_paths(out: Path, files: list[Path], romfs: Path | None) -> set[str]:
    """The board paths the staged image puts on the filesystem."""
    paths = {"/" + str(f) for f in files if f.name != "romfs.img"}
    if romfs is not None:
        paths = {p for p in paths if not p.startswith("/lib/")}
    return paths


def port_present(port: str) -> bool:
    return not port.startswith("/dev/") or os.path.exists(port)


def write_micropython(board: str, image: Path, pins: dict, port: str, run, erase=False,
                      uf2_drive: Path | None = None, mpremote: str | None = None,
                      wait_s: float = 30.0) -> str:
    """Write the fleet's pinned MicroPython image to the board on `port` (checked first: a
    file that is not the pinned one is refused before anything runs). Returns what was done."""
    data = flashimg.check_pinned(board, image, pins)
    if board == "esp32_lte":
        exe = flashimg.esptool_exe()
        if exe is None:
            raise FlashError("--micropython needs esptool (pip install envbox[bench])")
        for cmd in flashimg.esptool_commands(exe, port, image, erase):
            r = run(cmd)
            if r.returncode != 0:
                raise FlashError(f"esptool failed (exit {r.returncode}): {' '.join(cmd)}")
        flashimg.wait_for(lambda: port_present(port), wait_s, f"{port} after esptool")
        return f"esptool wrote {image.name} at 0x1000"
    drive = uf2_drive if uf2_drive is not None else flashimg.find_uf2_drive()
    if drive is None and mpremote is not None and port_present(port):
        # a Pico W running MicroPython enters its boot ROM on machine.bootloader()
        run([mpremote, "connect", port, "bootloader"])
        drive = flashimg.wait_for(flashimg.find_uf2_drive, wait_s, "the RPI-RP2 drive")
    if drive is None:
        raise FlashError("no RPI-RP2 drive: hold BOOTSEL while plugging the Pico W in, or "
                         "give --uf2-drive PATH")
    flashimg.copy_uf2(data, image.name, drive)
    flashimg.wait_for(lambda: port_present(port), wait_s, f"{port} after the UF2 copy")
    return f"copied {image.name} to {drive}"


def probe_board(exe: str, port: str, run) -> dict:
    r = run([exe, "connect", port, "exec", flashimg.probe_script()], capture_output=True,
            text=True, timeout=60)
    return flashimg.parse_probe((r.stdout or "") + (r.stderr or ""))


def _shown(cfg: dict) -> dict:
    out = {}
    for k, v in cfg.items():
        if any(s in k for s in SECRET_KEYS):
            out[k] = "***"
        elif k == "ca_pem":
            out[k] = f"(PEM, {len(v)} bytes)"
        else:
            out[k] = v
    return out


def main(argv=None, run=subprocess.run) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="envbox flash", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("board", nargs="?", choices=BOARDS,
                   help="the board (with --fleet: taken from the fleet's inventory)")
    p.add_argument("--device-id", required=True)
    p.add_argument("--fleet", help="the fleet directory of `envbox provision`: the box's "
                                   "settings, login, CA and config key")
    p.add_argument("--broker", help="without --fleet: HOST:PORT of the MQTT broker")
    p.add_argument("--insecure", action="store_true",
                   help="without --fleet: no login and no TLS (a development broker); the box "
                        "reports insecure: true")
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
    p.add_argument("--port", help="serial port of the board: check it and copy the image with "
                                  "mpremote")
    p.add_argument("--micropython", metavar="FILE",
                   help="with --port and --fleet: first write this MicroPython image (the "
                        "fleet's pinned one: ESP32 .bin with esptool, Pico W .uf2 by copy)")
    p.add_argument("--erase", action="store_true",
                   help="with --micropython on an ESP32: erase the whole flash first (a new "
                        "box; also erases its filesystem and journal)")
    p.add_argument("--uf2-drive", help="pico_w: where the RPI-RP2 drive is mounted")
    p.add_argument("--romfs", action="store_true",
                   help="put the firmware package in a ROMFS image (bytecode runs from flash; "
                        "needs a MicroPython image with a ROMFS partition)")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    fleet = None
    try:
        if a.fleet:
            fleet, board, cfg = config_from_fleet(a)
        else:
            if not a.board or not a.broker:
                raise UsageError("without --fleet: BOARD and --broker HOST:PORT are needed")
            board = a.board
            cfg = config_for(a)
        if a.micropython and not (a.port and fleet):
            raise UsageError("--micropython needs --port and --fleet (the pinned image)")
        exe = None
        if a.port:
            exe = mpremote_exe()
            if exe is None:
                raise UsageError("--port needs mpremote (pip install envbox[bench])")
    except UsageError as e:
        print(f"envbox flash: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(a.out or f"envbox-image-{a.device_id}")
    try:
        files = stage(board, cfg, out, out.parent / (out.name + ".build"), a.safe_mode)
    except RuntimeError as e:           # mpy-cross refused a file
        print(f"envbox flash: {e}", file=sys.stderr)
        return 1
    os.chmod(out / "config.json", 0o600)    # its password and config key
    romfs = None
    if a.romfs:
        try:
            romfs = romfs_image(out, out / "romfs.img")
        except RuntimeError as e:
            print(f"envbox flash: {e}", file=sys.stderr)
            return 1
    total = sum((out / f).stat().st_size for f in files)
    summary = {"board": board, "image": str(out), "files": len(files), "bytes": total,
               "config": _shown(cfg), "firmware": firmware_version()}
    if romfs is not None:
        summary["romfs"] = {"image": str(romfs), "bytes": romfs.stat().st_size}
    print(json.dumps(summary, sort_keys=True))
    if exe is None:
        return 0
    try:
        if a.micropython:
            done = write_micropython(board, Path(a.micropython), fleet.images, a.port, run,
                                     erase=a.erase,
                                     uf2_drive=Path(a.uf2_drive) if a.uf2_drive else None,
                                     mpremote=exe)
            print(json.dumps({"micropython": done}))
        probe = probe_board(exe, a.port, run)
        pinned = (fleet.images.get(board) or {}).get("micropython") if fleet else None
        mpy = flashimg.mpy_header(out / "board.mpy")
        for w in flashimg.check_board(board, probe, mpy, pinned):
            print(f"envbox flash: warning: {w}", file=sys.stderr)
        stale = flashimg.stale_files(probe["files"], image_paths(out, files, romfs))
    except FlashError as e:
        print(f"envbox flash: {e}", file=sys.stderr)
        return 1
    cmd = copy_commands(exe, a.port, out, romfs, stale)
    r = run(cmd)
    if r.returncode != 0:
        print(f"envbox flash: mpremote failed (exit {r.returncode}): {' '.join(cmd)}",
              file=sys.stderr)
        return 1
    mp = ".".join(map(str, probe["version"]))
    print(json.dumps({"flashed": a.device_id, "port": a.port, "micropython": mp,
                      "removed": stale}, sort_keys=True))
    if fleet is not None:
        inv = fleet.inventory.setdefault(a.device_id, {"device_id": a.device_id})
        inv.update({"flashed_at": now_iso(), "flashed_firmware": summary["firmware"],
                    "firmware_version": summary["firmware"], "micropython": mp})
        fleet.save_inventory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
