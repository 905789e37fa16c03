"""A Raspberry Pi gateway installs only what it runs (issue 13): the base dependencies are what
every role speaks (MQTT), each role has an extra (`[gateway]`, `[sim]`, `[rpi]`, `[report]`,
`[bench]`), and `[test]` covers them all. The gateway's code imports nothing outside the base and
`[gateway]`: checked by reading its imports, and by running it with every other third-party
package made unimportable (a sys.meta_path finder in a fresh interpreter)."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# import name -> distribution, for the third-party packages the project uses
DIST = {"paho": "paho-mqtt", "influxdb_client": "influxdb-client", "serial": "pyserial",
        "smbus2": "smbus2", "pynmea2": "pynmea2", "tqdm": "tqdm", "numpy": "numpy",
        "pandas": "pandas", "scipy": "scipy", "shapely": "shapely", "pyproj": "pyproj",
        "matplotlib": "matplotlib", "mpremote": "mpremote", "esptool": "esptool",
        "littlefs": "littlefs-python"}


def dists(reqs):
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def extra(name):
    return dists(PROJECT["optional-dependencies"][name])


def third_party_imports(directory):
    found = set()
    for p in sorted((ROOT / directory).rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n.split(".")[0] for n in names if n.split(".")[0] in DIST}
    return found


def test_the_base_leaves_the_box_side_to_the_extras():
    base = dists(PROJECT["dependencies"])
    assert not base & {"pyserial", "smbus2", "pynmea2", "tqdm", "influxdb-client"}, base
    assert {"pyserial", "smbus2"} <= extra("rpi")


def test_the_gateway_extra_covers_what_the_gateway_imports():
    need = {DIST[m] for m in third_party_imports("gateway")}
    assert need, "no third-party import found in gateway/: the scan is blind"
    assert need <= dists(PROJECT["dependencies"]) | extra("gateway"), need


def test_the_simulator_extra_covers_what_the_simulator_imports():
    need = {DIST[m] for m in third_party_imports("simulator")}
    assert need <= dists(PROJECT["dependencies"]) | extra("sim"), need


def test_the_test_extra_covers_every_role():
    test = PROJECT["optional-dependencies"]["test"]
    covered = set(extra("test"))
    for r in test:
        m = re.match(r"envbox\[([a-z,]+)\]", r)
        for e in (m.group(1).split(",") if m else []):
            covered |= extra(e)
    for e in ("gateway", "sim", "rpi", "report"):
        assert extra(e) <= covered, e


BLOCKED = sorted(set(DIST) - {"paho", "influxdb_client"})
GATEWAY_ONLY = r'''
import importlib, pkgutil, sys

BLOCKED = set(%r)

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError("blocked: %%s (not in envbox[gateway])" %% name, name=name)
        return None

sys.meta_path.insert(0, Block())
import envbox.gateway as g
for m in pkgutil.iter_modules(g.__path__):
    importlib.import_module("envbox.gateway." + m.name)
from envbox.gateway.cli import main
sys.argv = ["envbox-gateway", "--help"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print("GATEWAY-OK", sorted(k for k in sys.modules if k.split(".")[0] in BLOCKED))
''' % (BLOCKED,)


def test_the_gateway_runs_with_only_its_extra():
    r = subprocess.run([sys.executable, "-c", GATEWAY_ONLY], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "GATEWAY-OK []" in r.stdout, r.stdout[-2000:]


def test_the_blocker_blocks():
    """The same finder makes a module that needs a blocked package fail (the check is not blind)."""
    code = GATEWAY_ONLY.split("import envbox.gateway")[0] + "import envbox.boards.rpi as r\n" \
        "r.SerialUART('/dev/null', 9600)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "blocked: serial" in r.stderr, r.stdout + r.stderr
