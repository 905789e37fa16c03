"""tools/provision.py (`envbox flash`, without a device): stages a device image whose board,
bus classes and firmware are mpy-cross output, and which the MicroPython Unix port can import and
construct from the image alone (with a fake `machine`, as in tests/test_boards_hw.py)."""

import json
import os
import subprocess
import sys

import pytest

from envbox.provision import main as provision_main

from test_boards_hw import MP_MACHINE

MP = os.path.join(os.path.dirname(sys.executable), "micropython")


@pytest.mark.parametrize("board,extra", [
    ("pico_w", ["--wifi-ssid", "patrol", "--wifi-password", "s3cret"]),
    ("esp32_lte", ["--apn", "iot.example"]),
])
def test_staged_image_runs_from_mpy_files(tmp_path, capsys, board, extra):
    img = tmp_path / "img"
    rc = provision_main([board, "--device-id", "sj-042", "--broker", "10.1.2.3:1883",
                         "--modules", "pms5003,ze03_no2,sht4x", "--out", str(img), "--insecure",
                         *extra])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert "s3cret" not in json.dumps(out)
    files = {str(p.relative_to(img)) for p in img.rglob("*") if p.is_file()}
    assert {"main.py", "board.mpy", "config.json", "lib/envbox/__init__.mpy",
            "lib/envbox/boards/buses.mpy", "lib/envbox/firmware/app.mpy",
            "lib/envbox/firmware/drivers/pms5003.mpy"} <= files
    assert not [f for f in files if f.endswith(".py") and f != "main.py"]
    cfg = json.loads((img / "config.json").read_text())
    assert cfg["device_id"] == "sj-042" and cfg["broker"] == "10.1.2.3:1883"
    assert cfg["insecure"] is True
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "machine.py").write_text(MP_MACHINE)
    script = ("import board\n"
              "b = board.Board('config.json')\n"
              "print(b.device_id.decode(), b.broker_host, b.broker_port, len(b.sensors),"
              " [p[0] for p in b.bus_plan()])\n")
    # only the image, the fake machine and the interpreter's frozen modules (asyncio is frozen
    # into the device firmware too) on the path: not the repository
    env = dict(os.environ, MICROPYPATH="%s:%s:%s:.frozen" % (img, img / "lib", fake))
    r = subprocess.run([MP, "-c", script], cwd=img, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[:4] == ["sj-042", "10.1.2.3", "1883", "3"]
    assert "'gnss'," in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["pico_w", "--device-id", "a/b", "--broker", "h:1", "--wifi-ssid", "x"], "device id"),
    (["pico_w", "--device-id", "ok", "--broker", "nohost", "--wifi-ssid", "x"], "broker"),
    (["pico_w", "--device-id", "ok", "--broker", "h:1", "--insecure"], "wifi"),
    (["esp32_lte", "--device-id", "ok", "--broker", "h:1", "--insecure"], "apn"),
    # no fleet, no login and CA, not --insecure: a box that could never connect
    (["esp32_lte", "--device-id", "ok", "--broker", "h:1", "--apn", "x"], "envbox provision"),
    (["--device-id", "ok", "--broker", "h:1", "--insecure"], "BOARD"),
])
def test_bad_settings_exit_2(tmp_path, capsys, args, needle):
    assert provision_main(args + ["--out", str(tmp_path / "img")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "img").exists()


def test_a7670_and_safe_mode_are_staged(tmp_path, capsys):
    img = tmp_path / "img"
    rc = provision_main(["esp32_lte", "--device-id", "sj-043", "--broker", "10.1.2.3:1883",
                         "--apn", "cmnet", "--modem", "a7670", "--safe-mode", "--out", str(img),
                         "--insecure"])
    assert rc == 0
    assert json.loads((img / "config.json").read_text())["modem"] == "a7670"
    assert (img / "safe_mode").exists()
    from envbox.provision import copy_commands
    cmd = copy_commands("mpremote", "/dev/ttyUSB0", img)
    assert ":safe_mode" in cmd
