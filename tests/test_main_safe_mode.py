"""firmware/main.py, the device's entry point, under the MicroPython Unix port playing an ESP32
(PLATFORM, a fake `machine` checked against nothing but what main.py calls): safe mode by flag
file or by the BOOT button starts no app; a board that fails to build is logged and reset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
MP = os.path.join(os.path.dirname(sys.executable), "micropython")

FAKE_MACHINE = '''
HELD = %d
RESETS = []
class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    def __init__(self, pid, mode=-1, pull=-1, **kw):
        self.pid = pid
    def value(self, *a):
        return 0 if (self.pid == 0 and HELD) else 1
def reset():
    RESETS.append(1)
    print("RESET")
'''

FAKE_BOARD = '''
def make():
    raise OSError(5)          # e.g. the I2C bus hangs while the board is built
'''

SCRIPT = '''
import sys
import envbox.firmware.main as m
m.PLATFORM = "esp32"
m.SAFE_FLAG = %r
m.CRASH_LOG = %r
m.CRASH_RESET_DELAY_S = 0
m.main()
print("APP" if "envbox.firmware.app" in sys.modules else "NOAPP")
'''


def run(tmp_path, held=False, flag=False):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE % (1 if held else 0))
    (tmp_path / "board.py").write_text(FAKE_BOARD)
    if flag:
        (tmp_path / "safe_mode").write_text("")
    script = tmp_path / "boot.py"
    script.write_text(SCRIPT % (str(tmp_path / "safe_mode"), str(tmp_path / "last_crash.txt")))
    env = dict(os.environ, MICROPYPATH=f"{tmp_path}:{MPSRC}:.frozen")
    r = subprocess.run([MP, str(script)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.parametrize("held,flag,why", [(False, True, "flag"), (True, False, "button")])
def test_safe_mode_starts_no_app(tmp_path, held, flag, why):
    out = run(tmp_path, held=held, flag=flag)
    assert f"safe mode ({why})" in out and "NOAPP" in out and "RESET" not in out
    assert not (tmp_path / "last_crash.txt").exists()


def test_a_board_that_fails_to_build_is_logged_and_reset(tmp_path):
    out = run(tmp_path)
    assert "RESET" in out and "safe mode" not in out
    assert "OSError: [Errno 5] EIO" in (tmp_path / "last_crash.txt").read_text()
