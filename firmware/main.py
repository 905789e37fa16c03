# Entry point. On a device, the provisioning tool copies boards/<name>.py to /board.py and the
# firmware package to /lib/firmware; under the Unix port (tests, demo) ENVBOX_BOARD names the
# board module in boards/ (default `sim`).
import os

try:
    import board as _board
except ImportError:
    _name = os.getenv("ENVBOX_BOARD") or "sim"
    _board = __import__("boards." + _name, None, None, (_name,))

from firmware import app

app.run(_board.make())
