"""The firmware as a ROMFS image (`envbox flash --romfs`): built with mpremote from the same .mpy
files a box gets, mounted with vfs.VfsRom under the MicroPython Unix port, and the app run from it
(board, app, samples, a catch-up batch, an acknowledgement, a status message: the scenario of
tests/mp32/app_heap.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from envbox import provision
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards


def _micropython():
    return os.path.join(os.path.dirname(sys.executable), "micropython")


def test_flash_romfs_builds_an_image_and_the_app_runs_from_it(tmp_path):
    out = tmp_path / "image"
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "envbox"), "flash",
                        "esp32_lte", "--device-id", "sj-009", "--broker", "broker.example:8883",
                        "--apn", "iot", "--out", str(out), "--romfs", "--insecure"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    img = Path(summary["romfs"]["image"])
    assert img.exists() and summary["romfs"]["bytes"] == img.stat().st_size > 10000
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'tests' / 'firmware'}:.frozen:{MPSRC}")
    run = subprocess.run([_micropython(), "-X", "heapsize=1m",
                          str(ROOT / "tests" / "mp32" / "romfs_heap.py"), str(img), "pm-gnss"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-3000:]
    assert "firmware_from=/rom/lib/envbox/firmware/" in text, text[-3000:]
    assert "peak_heap_bytes_pm_gnss=" in text, text[-3000:]


def test_romfs_image_holds_the_firmware_package(tmp_path):
    out = tmp_path / "stage"
    provision.stage("pico_w", {"device_id": "x", "broker": "h:1", "wifi_ssid": "s"}, out,
                    tmp_path / "build")
    img = provision.romfs_image(out, tmp_path / "romfs.img")
    data = img.read_bytes()
    # a ROMFS image names its files in the clear: the package's modules are in it
    for name in (b"wire.mpy", b"journal_ring.mpy", b"uplink.mpy", b"buses.mpy"):
        assert name in data, name


def test_the_freeze_manifest_names_existing_packages():
    """firmware/manifest.py in micropython-lib's format, read with stand-ins for its functions:
    it freezes the one import name, envbox.firmware and envbox.boards, from the envbox/ tree
    over the sources (mpybuild.source_root())."""
    source_root()
    calls = []
    env = {"include": lambda p, **k: calls.append(("include", p)),
           "package": lambda name, files=None, base_path=".", opt=None:
               calls.append(("package", name, files, base_path)),
           "freeze": lambda path, script=None, opt=None: calls.append(("freeze", path, script)),
           "module": lambda *a, **k: calls.append(("module",) + a),
           "require": lambda *a, **k: calls.append(("require",) + a)}
    exec((ROOT / "firmware" / "manifest.py").read_text(), env)
    pkgs = [c for c in calls if c[0] == "package"]
    assert {c[1] for c in pkgs} == {"envbox/firmware"}
    for _, name, files, base in pkgs:
        d = (ROOT / "firmware" / base / name).resolve()
        assert d.is_dir(), d
        assert (d / "wire.py").is_file() and (d / "__init__.py").is_file(), d
        for f in files or ():
            assert (d / f).is_file(), d / f
    frozen = [c for c in calls if c[0] == "freeze"]
    assert frozen, calls
    for _, path, scripts in frozen:
        for f in (scripts,) if isinstance(scripts, str) else scripts:
            assert (ROOT / "firmware" / path / f).is_file(), f
    assert {f for _, _, s in frozen for f in s} >= {"envbox/__init__.py",
                                                     "envbox/boards/buses.py"}
    assert ("include", "$(PORT_DIR)/boards/manifest.py") in calls
