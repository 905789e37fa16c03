"""`envbox bench-check PORT` (tools/bench.py) without a box: the script that runs on the box is
run by the MicroPython Unix port, on the esp32_lte board built from its own file, with a fake
`machine` whose I2C bus answers the scan at the addresses of the fitted parts, whose modem UART
answers AT commands as a SIM7600 does (ATI, CPIN, CICCID, CSQ, CEREG) and whose sensor UARTs are
silent. `envbox bench-check` itself runs with mpremote's runs recorded; its `run` step is carried
out by the Unix port. A real box answers through mpremote (not testable here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from envbox import bench
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
MP = os.path.join(os.path.dirname(sys.executable), "micropython")

FAKE_MACHINE = r'''
ANSWERS = {
    b"AT": b"OK", b"ATE0": b"OK", b"AT+CMEE=1": b"OK",
    b"ATI": b"Manufacturer: SIMCOM INCORPORATED\r\nModel: SIMCOM_SIM7600G-H\r\n"
            b"Revision: LE20B04SIM7600G22\r\nOK",
    b"AT+CPIN?": b"+CPIN: READY\r\n\r\nOK", b"AT+CICCID": b"+ICCID: 89860318760212345678\r\n\r\nOK",
    b"AT+CSQ": b"+CSQ: 21,99\r\n\r\nOK", b"AT+CEREG?": b"+CEREG: 0,1\r\n\r\nOK",
    b"AT+CREG?": b"+CREG: 0,1\r\n\r\nOK",
}
I2C_PRESENT = (0x44, 0x48, 0x62)
MODEM_ON = [%(modem_on)s]


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    def __init__(self, pid, mode=None, value=None, pull=None):
        self.id = pid
        self.v = value or 0
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class UART:
    def __init__(self, uid, baudrate=9600, **kw):
        self.id = uid
        self.rx = bytearray()
        self.line = bytearray()
    def init(self, baudrate=9600, **kw):
        pass
    def any(self):
        return len(self.rx)
    def readinto(self, buf, nbytes=None):
        n = min(len(buf) if nbytes is None else nbytes, len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n
    def write(self, b):
        if self.id == 1 and MODEM_ON[0]:       # the modem's UART
            for c in bytes(b):
                if c == 13:
                    a = ANSWERS.get(bytes(self.line))
                    self.rx += b"\r\n" + (a if a is not None else b"ERROR") + b"\r\n"
                    self.line = bytearray()
                else:
                    self.line.append(c)
        return len(b)


class I2C:
    def __init__(self, iid, **kw):
        pass
    def scan(self):
        return list(I2C_PRESENT)
    def writeto(self, addr, buf, stop=True):
        if addr not in I2C_PRESENT:
            raise OSError(19)
        return len(buf)
    def readfrom_into(self, addr, buf, stop=True):
        raise OSError(5)
    def writeto_mem(self, addr, mem, buf):
        pass
    def readfrom_mem_into(self, addr, mem, buf):
        buf[0] = 64 if (mem >> 3) == 8 else 0


def reset_cause():
    return 1
'''

BOARD = '''
from envbox.boards import esp32_lte
def make():
    return esp32_lte.Board({"device_id": "sj-bench", "broker": "mqtt.example:8883",
                            "apn": "cmnet", "modules": ["pms5003", "sht4x", "scd4x"]})
'''


def run_script(tmp_path, modem_on=True, boot_s=1, sample_s=1):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE % {"modem_on": modem_on})
    (tmp_path / "board.py").write_text(BOARD)
    script = tmp_path / "bench_on_box.py"
    script.write_text(bench.bench_script(boot_s, sample_s))
    env = dict(os.environ, MICROPYPATH=f"{tmp_path}:{MPSRC}:.frozen")
    return subprocess.run([MP, "-X", "heapsize=1m", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_box_script_scans_asks_the_modem_and_takes_a_sample(tmp_path):
    r = run_script(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    rep = bench.parse(out)
    assert rep["complete"] and rep["board"] == "esp32_lte" and rep["device"] == "sj-bench"
    assert rep["i2c"]["expected"] == ["0x44", "0x62", "0x48"] and rep["i2c"]["missing"] == []
    m = rep["modem"]
    assert m["at"] and m["sim"] == "ready" and m["csq"] == 21 and m["reg"] == 1
    assert m["rssi_dbm"] == -71 and m["iccid"].startswith("8986")
    assert "SIM7600G-H" in m["ati"]
    s = rep["sample"]
    assert s["device"] == "sj-bench" and rep["sample_bytes"] > 10
    # what the fake's silent modules give, as statuses, and no GNSS: reported, not hidden
    assert s["channels"]["pm25_ugm3"]["status"] == "warming_up"     # PMS5003: 30 s warm-up
    assert {s["channels"][c]["status"] for c in ("temp_c", "rh_pct")} <= {"no_data",
                                                                          "sensor_error"}
    assert any("GNSS" in p for p in rep["problems"])
    assert any("no data from" in p and "temp_c" in p for p in rep["problems"])


def test_a_silent_modem_is_a_problem(tmp_path):
    rep = bench.parse(run_script(tmp_path, modem_on=False).stdout)
    assert rep["complete"] and rep["modem"]["at"] is False
    assert any("no answer to AT" in p for p in rep["problems"])


def test_an_unfinished_check_is_a_problem():
    rep = bench.parse("Traceback (most recent call last):\nImportError: no module named 'board'")
    assert not rep.get("complete") and "no module named 'board'" in rep["problems"][-1]


def test_bench_check_enters_and_leaves_safe_mode_around_the_script(tmp_path, capsys):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE % {"modem_on": True})
    (tmp_path / "board.py").write_text(BOARD)
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        if "exec" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "ENVBOX-SAFE False\n", "")
        if "run" in cmd:
            # the script mpremote would send to the box, run by the Unix port instead
            env = dict(os.environ, MICROPYPATH=f"{tmp_path}:{MPSRC}:.frozen")
            return subprocess.run([MP, "-X", "heapsize=1m", cmd[-1]], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    rc = bench.main(["/dev/ttyUSB0", "--sample-seconds", "1", "--modem-boot-seconds", "1"],
                    run=run, sleep=lambda s: None)
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["port"] == "/dev/ttyUSB0" and rep["modem"]["reg"] == 1
    steps = [c[3:] for c in calls]
    assert steps[0][0] == "exec"
    assert steps[1] == ["fs", "touch", ":safe_mode", "+", "reset"]
    assert steps[2][0] == "run"
    assert steps[3] == ["fs", "rm", ":safe_mode", "+", "reset"]
    # a box already in safe mode is left in it
    enter, check, leave = bench.commands("mpremote", "/dev/ttyACM0", Path("s.py"), True, False)
    assert enter == [] and leave == [] and check[-2:] == ["run", "s.py"]
