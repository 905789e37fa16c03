"""One import name for each module (issue 13): the firmware is `envbox.firmware` and the boards
`envbox.boards` on the host (pyproject.toml) and on the box (/lib/envbox/, tools/provision.py), so
no code imports them as top-level `firmware` / `boards` or probes both names."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRS = ("firmware", "boards", "tools", "tests", "benchmarks", "simulator", "gateway")

# (import|from) firmware/boards at a line's start, __import__ or a name built from "firmware."
TOP_LEVEL = re.compile(r"^\s*(from|import)\s+(firmware|boards)\b"
                       r"|__import__\(\s*[\"'](firmware|boards)\."
                       r"|[\"'](firmware|boards)\.[A-Za-z_.]*[\"']\s*\+")


def sources():
    for d in DIRS:
        for p in sorted((ROOT / d).rglob("*")):
            if p.suffix in (".py", ".mjs") and "node_modules" not in p.parts:
                yield p


def test_no_module_imports_the_firmware_or_boards_under_a_second_name():
    bad = []
    for p in sources():
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if TOP_LEVEL.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


PROBE = re.compile(r"except ImportError[^\n]*\n\s*(from|import)\s+(envbox\.)?(firmware|boards)\b")


def test_the_firmware_does_not_derive_or_probe_its_package_name():
    # a name derived from __name__, or a second import after ImportError, was the sign of two
    # names (one on the box, one on the host)
    for p in sorted((ROOT / "firmware").rglob("*.py")) + sorted((ROOT / "boards").rglob("*.py")):
        text = p.read_text()
        assert not PROBE.search(text), p
        assert "__name__[" not in text and "__name__.rpartition" not in text, p
