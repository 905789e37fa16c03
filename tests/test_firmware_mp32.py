"""The 32-bit lane: every firmware test file again, under the official 32-bit MicroPython
WebAssembly build (npm @micropython/micropython-webassembly-pyscript, run by node through
tests/mp32/run.mjs; scripts/setup.sh installs both).

The Unix port the other lanes use is 64-bit: its small integers hold +-2^62, so code that makes a
big integer on a device (every longitude east of 107.37 degrees, times 10^7, on an ESP32 or an
RP2040) passes there and raises MemoryError under heap_lock here."""

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MP_TESTS = sorted(glob.glob(str(ROOT / "tests" / "firmware" / "test_*.py")))
RUNNER = ROOT / "tests" / "mp32" / "run.mjs"


def run_mp32(script: str, *args: str, heap: str = "4m", timeout: float = 300):
    node = shutil.which("node")
    if not node or not (ROOT / "tests" / "mp32" / "node_modules").is_dir():
        pytest.fail("node and the 32-bit MicroPython build are not installed: run `make setup`")
    return subprocess.run([node, str(RUNNER), "-X", f"heapsize={heap}", script, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_lane_is_32_bit():
    r = run_mp32(str(ROOT / "tests" / "mp32" / "probe.py"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "small_int_bits=31" in r.stdout and "heap_lock=yes" in r.stdout, r.stdout


@pytest.mark.parametrize("path", MP_TESTS, ids=[os.path.basename(p) for p in MP_TESTS])
def test_firmware_under_32bit_micropython(path):
    r = run_mp32(path)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and out.rstrip().endswith("MPTEST OK"), out[-6000:]


@pytest.mark.parametrize("kit", ["pm-gnss", "full"])
def test_the_app_runs_on_32_bits(kit):
    """Board and app built with the kit's real drivers on fakes: samples, live sends, a catch-up
    batch, an acknowledgement and a status message, on 32-bit integers (tests/mp32/app_heap.py;
    the benchmark reads its heap figures)."""
    r = run_mp32(str(ROOT / "tests" / "mp32" / "app_heap.py"), kit)
    out = r.stdout + r.stderr
    key = "peak_heap_bytes_" + kit.replace("-", "_")
    assert r.returncode == 0 and key in out, out[-4000:]
