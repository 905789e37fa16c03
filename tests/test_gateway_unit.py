"""The systemd unit the product ships: systemd-analyze verify finds nothing wrong with it (with
the gateway's executable where the unit expects it), and it carries the hardening of issue 11."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "envbox-gateway.service"


def directives():
    out = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def test_unit_hardening():
    d = directives()
    assert d["CapabilityBoundingSet"] == ""
    assert d["SystemCallFilter"] == "@system-service"
    for k in ("ProtectClock", "ProtectKernelLogs", "RestrictSUIDSGID", "NoNewPrivileges"):
        assert d[k] == "yes", k
    assert d["ProtectProc"] == "invisible"
    assert d["UMask"] == "0077"
    assert d["MemoryMax"].endswith("M") and int(d["MemoryMax"][:-1]) >= 128


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path):
    exe = Path(sys.executable).parent / "envbox-gateway"
    unit = tmp_path / "envbox-gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/envbox/venv/bin/envbox-gateway", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "envbox-gateway" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
