"""firmware/ and boards/ type-checked against the MicroPython ports' PyPI stubs
(micropython-esp32-stubs and micropython-rp2-rpi-pico-w-stubs, 1.29, installed by
scripts/setup.sh into .venv/stubs/), with basedpyright (PyPI; the stubs are written for pyright).

What this catches: a call to a port API with an argument the port does not take, an attribute or
module the port does not have (machine.UART(..., baud=...), network.PPP.conect, esp.flashsize),
a missing import. The check runs in pyright's "basic" mode with the Optional checks off: the
firmware is untyped MicroPython whose lazily-built attributes start as None.

The ESP32 run covers the firmware package, the esp32_lte board and the bus classes; the RP2 run
the pico_w board, its Wi-Fi link and the entry point. boards/sim.py, boards/simmodem.py (Unix
port) and boards/rpi.py (CPython) are not device code and are not checked here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbox.mpybuild import source_root   # firmware/, boards/ as envbox.firmware, .boards

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / ".venv" / "stubs"
PYRIGHT = Path(sys.executable).parent / "basedpyright"

RUNS = {
    "esp32": ["firmware", "boards/esp32_lte.py", "boards/buses.py"],
    "rp2": ["boards/pico_w.py", "boards/buses.py", "firmware/linkwifi.py", "firmware/link.py",
            "firmware/main.py", "firmware/boardbase.py"],
}
RULES = {
    "typeCheckingMode": "basic",
    "reportMissingModuleSource": "none",
    # untyped code: attributes made on first use start as None
    "reportOptionalMemberAccess": "none",
    "reportOptionalSubscript": "none",
    "reportOptionalOperand": "none",
    "reportOptionalIterable": "none",
    # `try: from micropython import const / except ImportError: def const(x)` and the compat
    # shims are redefinitions by design
    "reportAssignmentType": "none",
    "reportRedeclaration": "none",
}


# Findings in files whose owner fixes them in another branch (file, rule, message start). An
# entry that no longer matches anything fails the test, so the list only shrinks.
KNOWN: set = set()


def _known(d):
    f = str(Path(d["file"]).relative_to(ROOT))
    for kf, rule, start in KNOWN:
        if f == kf and d.get("rule") == rule and d["message"].startswith(start):
            return (kf, rule, start)
    return None


def pyright(port, tmp_path):
    stubs = STUBS / port
    if not (stubs / "machine.pyi").exists():
        pytest.fail(f"MicroPython stubs missing in {stubs}: run `make setup`")
    cfg = dict(RULES, include=[str(ROOT / p) for p in RUNS[port]],
               exclude=[str(ROOT / "firmware" / "main.py")] if port == "esp32" else [],
               typeshedPath=str(stubs), stubPath=str(stubs),
               extraPaths=[str(source_root()), str(stubs)],
               pythonVersion="3.11", pythonPlatform="Linux")
    conf = tmp_path / f"pyright-{port}.json"
    conf.write_text(json.dumps(cfg))
    r = subprocess.run([str(PYRIGHT), "-p", str(conf), "--outputjson"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, NODE_OPTIONS="--max-old-space-size=1024"))
    try:
        out = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"basedpyright did not run: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return [d for d in out["generalDiagnostics"] if d["severity"] == "error"], out["summary"]


def _fmt(diags):
    return "\n".join(f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: "
                     f"{d['message'].splitlines()[0]} ({d.get('rule', '')})" for d in diags)


@pytest.mark.parametrize("port", sorted(RUNS))
def test_device_code_type_checks_against_the_port_stubs(port, tmp_path):
    errors, summary = pyright(port, tmp_path)
    assert summary["filesAnalyzed"] >= len(RUNS[port])
    new = [d for d in errors if _known(d) is None]
    assert not new, f"{len(new)} errors against the {port} stubs:\n" + _fmt(new)
    if port == "esp32":
        stale = KNOWN - {_known(d) for d in errors}
        assert not stale, f"fixed: remove from KNOWN: {stale}"


def test_the_check_can_fail(tmp_path):
    """A wrong keyword to machine.UART is an error against the stubs (the check is not blind)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import machine\nu = machine.UART(1, baud=9600)\nmachine.Pin(4).vale(1)\n")
    stubs = STUBS / "esp32"
    cfg = dict(RULES, include=[str(bad)], typeshedPath=str(stubs), stubPath=str(stubs),
               extraPaths=[str(stubs)], pythonVersion="3.11")
    conf = tmp_path / "pyright-bad.json"
    conf.write_text(json.dumps(cfg))
    r = subprocess.run([str(PYRIGHT), "-p", str(conf), "--outputjson"], capture_output=True,
                       text=True, timeout=600)
    diags = json.loads(r.stdout)["generalDiagnostics"]
    lines = {d["range"]["start"]["line"] + 1 for d in diags if d["severity"] == "error"}
    assert lines == {2, 3}, diags
