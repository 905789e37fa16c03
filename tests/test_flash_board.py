"""`envbox flash` against a board, without a board (tools/flashimg.py, tools/provision.py):

- the MicroPython image: ESP32 .bin and RP2040 .uf2 recognised by their headers, a file whose
  sha256 is not the fleet's pinned one refused before anything runs, the esptool command line
  read by esptool's own parser (it gets as far as opening the missing port), the UF2 copied onto
  a directory that looks like the RP2040 boot ROM's drive;
- the board check: the probe script run under the MicroPython Unix port over a staged image with
  an old file in it and a /data directory (the stale file found, /data never touched), and
  every refusal (old MicroPython, other port, other .mpy version, not the pinned version);
- `envbox flash --fleet` with mpremote's runs recorded: the probe, then one mpremote run that
  removes the stale files and copies the image, and the inventory updated.

What only a device shows is not here: mpremote talking to a real board, esptool writing a chip,
the RP2040 rebooting after the copy (docs/provisioning.md, "What is tested")."""

import csv
import hashlib
import json
import os
import struct
import subprocess
import sys

import pytest

from envbox import fleet as F
from envbox import flashimg, provision
from envbox.flashimg import FlashError

from test_fleet import CA

MP = os.path.join(os.path.dirname(sys.executable), "micropython")
ESPTOOL = os.path.join(os.path.dirname(sys.executable), "esptool")


def esp32_bin(chip=0, n=8192):
    b = bytearray(n)
    b[0] = 0xE9
    b[1] = 3
    struct.pack_into("<H", b, 12, chip)
    return bytes(b)


def uf2(blocks=3, family=flashimg.UF2_FAMILY_RP2040):
    out = bytearray()
    for i in range(blocks):
        blk = bytearray(512)
        struct.pack_into("<IIIIIIII", blk, 0, flashimg.UF2_MAGIC0, flashimg.UF2_MAGIC1,
                         flashimg.UF2_FLAG_FAMILY, 0x10000000 + 256 * i, 256, i, blocks, family)
        struct.pack_into("<I", blk, 508, flashimg.UF2_MAGIC_END)
        out += blk
    return bytes(out)


@pytest.fixture
def fleet(tmp_path):
    (tmp_path / "ca.pem").write_text(CA)
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "board", "modules", "apn", "wifi_ssid"])
        w.writerow(["sj-001", "esp32_lte", "pms5003,sht4x", "cmnet", ""])
        w.writerow(["sj-002", "pico_w", "pms5003", "", "depot"])
    img = tmp_path / "ESP32_GENERIC-SPIRAM-20250415-v1.25.0.bin"
    img.write_bytes(esp32_bin())
    pico = tmp_path / "RPI_PICO_W-20250415-v1.25.0.uf2"
    pico.write_bytes(uf2())
    assert F.main([str(tmp_path / "boxes.csv"), "--fleet", str(tmp_path / "fleet"), "--broker",
                   "mqtt.example:8883", "--ca", str(tmp_path / "ca.pem"),
                   "--image", f"esp32_lte={img}", "--image", f"pico_w={pico}"]) == 0
    return F.Fleet(tmp_path / "fleet")


def test_image_formats_are_recognised(tmp_path):
    flashimg.check_image_format("esp32_lte", "x.bin", esp32_bin())
    with pytest.raises(FlashError, match="chip id 9"):
        flashimg.check_image_format("esp32_lte", "x.bin", esp32_bin(chip=9))     # an ESP32-S3
    with pytest.raises(FlashError, match="not an ESP32"):
        flashimg.check_image_format("esp32_lte", "x.uf2", uf2())
    flashimg.check_image_format("pico_w", "x.uf2", uf2())
    with pytest.raises(FlashError, match="RP2040"):
        flashimg.check_image_format("pico_w", "x.uf2", uf2(family=0xADA52840))  # nRF52840
    with pytest.raises(FlashError, match="UF2"):
        flashimg.check_image_format("pico_w", "x.uf2", esp32_bin())
    assert flashimg.micropython_version_of("RPI_PICO_W-20250415-v1.25.0.uf2") == "1.25.0"


def test_the_pinned_image_only(tmp_path, fleet):
    pin = fleet.images["esp32_lte"]
    assert pin["micropython"] == "1.25.0" and pin["bytes"] == 8192
    good = tmp_path / "ESP32_GENERIC-SPIRAM-20250415-v1.25.0.bin"
    assert flashimg.check_pinned("esp32_lte", good, fleet.images) == good.read_bytes()
    other = tmp_path / "other.bin"
    other.write_bytes(esp32_bin()[:-1] + b"\x01")        # one byte differs
    calls = []
    with pytest.raises(FlashError, match="sha256 .* is not the pinned"):
        provision.write_micropython("esp32_lte", other, fleet.images, "/dev/ttyUSB0",
                                    lambda cmd, **kw: calls.append(cmd))
    assert calls == [], "nothing ran"
    with pytest.raises(FlashError, match="no MicroPython image pinned"):
        flashimg.check_pinned("esp32_lte", good, {})


def test_esptool_reads_our_command_line(tmp_path):
    img = tmp_path / "fw.bin"
    img.write_bytes(esp32_bin())
    cmds = flashimg.esptool_commands(ESPTOOL, "/dev/envbox-no-such-port", img, erase=True)
    assert [c[7] for c in cmds] == ["erase_flash", "write_flash"]
    assert cmds[1][-2:] == ["0x1000", str(img)]
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        # parsed, then stopped at the port (an argument esptool does not know fails earlier)
        assert "could not open" in out.lower() and "No such option" not in out, out[-600:]
    bad = cmds[1][:8] + ["--no-such-option"] + cmds[1][8:]
    r = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert "No such option" in r.stdout + r.stderr


def test_uf2_goes_onto_the_boot_drive(tmp_path, fleet):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                        "Board-ID: RPI-RP2\n")
    port = tmp_path / "ttyACM0"
    port.write_text("")                 # the port is back once MicroPython runs
    img = tmp_path / "RPI_PICO_W-20250415-v1.25.0.uf2"
    done = provision.write_micropython("pico_w", img, fleet.images, str(port),
                                       lambda cmd, **kw: pytest.fail(f"ran {cmd}"),
                                       uf2_drive=drive)
    assert (drive / img.name).read_bytes() == img.read_bytes() and "copied" in done
    with pytest.raises(FlashError, match="not an RPI-RP2"):
        flashimg.copy_uf2(img.read_bytes(), img.name, tmp_path)


def _staged(tmp_path):
    out = tmp_path / "img"
    files = provision.stage("esp32_lte", {"device_id": "sj-001", "broker": "h:1",
                                          "insecure": True}, out, tmp_path / "build")
    return out, files


def test_probe_under_micropython_finds_stale_files_and_leaves_data_alone(tmp_path):
    out, files = _staged(tmp_path)
    board = tmp_path / "board-fs"
    import shutil
    shutil.copytree(out, board)
    (board / "lib" / "envbox" / "firmware" / "old_module.mpy").write_bytes(b"M\x06\x00\x1f")
    # an image from before the one-name layout (/lib/firmware): flashing the new one removes it
    (board / "lib" / "firmware").mkdir()
    (board / "lib" / "firmware" / "app.mpy").write_bytes(b"M\x06\x00\x1f")
    (board / "board.py").write_text("# an older image's board as source\n")
    (board / "data").mkdir()
    (board / "data" / "state.json").write_text("{}")
    r = subprocess.run([MP, "-c", flashimg.probe_script(str(board))], capture_output=True,
                       text=True, timeout=60)
    probe = flashimg.parse_probe(r.stdout)
    paths = {p for p, _ in probe["files"]}
    assert "/lib/envbox/firmware/app.mpy" in paths and "/config.json" in paths
    assert not any(p.startswith("/data") for p in paths)
    stale = flashimg.stale_files(probe["files"], provision.image_paths(out, files, None))
    assert stale == ["/board.py", "/lib/envbox/firmware/old_module.mpy", "/lib/firmware/app.mpy"]
    # the Unix port is not the ESP32: refused
    mpy = flashimg.mpy_header(out / "board.mpy")
    with pytest.raises(FlashError, match="for 'linux'"):
        flashimg.check_board("esp32_lte", probe, mpy)


@pytest.mark.parametrize("probe,pinned,needle", [
    ({"platform": "esp32", "version": [1, 22, 2], "mpy": 0x2806}, None, "needs 1.24.0"),
    ({"platform": "rp2", "version": [1, 25, 0], "mpy": 0x1006}, None, "for 'rp2'"),
    ({"platform": "esp32", "version": [1, 25, 0], "mpy": 0x2805}, None, ".mpy version 5"),
    ({"platform": "esp32", "version": [1, 24, 1], "mpy": 0x2806}, "1.25.0", "pinned image"),
])
def test_board_checks_refuse(probe, pinned, needle):
    with pytest.raises(FlashError, match=needle):
        flashimg.check_board("esp32_lte", probe, (6, 0, 31), pinned)


def test_board_check_passes_a_good_board():
    probe = {"platform": "esp32", "version": [1, 25, 0], "mpy": (10 << 10) | (3 << 8) | 6}
    assert flashimg.check_board("esp32_lte", probe, (6, 0, 31), "1.25.0") == []
    assert flashimg.check_board("esp32_lte", probe, (6, 0, 31), None)     # a warning


class Recorder:
    """mpremote as the board would answer: the probe gets a probe line, the rest succeeds."""

    def __init__(self, probe):
        self.probe = probe
        self.calls = []

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        out = ""
        if "exec" in cmd:
            out = "MicroPython\n" + flashimg.PROBE_TAG + json.dumps(self.probe) + "\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")


def test_flash_from_the_fleet_checks_removes_copies_and_records(tmp_path, fleet, capsys):
    probe = {"platform": "esp32", "version": [1, 25, 0], "mpy": (10 << 10) | (3 << 8) | 6,
             "files": [["/lib/envbox/firmware/app.mpy", 100],
                       ["/lib/envbox/firmware/gone.mpy", 50],
                       ["/lib/firmware/app.mpy", 100],      # the layout before envbox/
                       ["/config.json", 10], ["/safe_mode", 0]]}
    rec = Recorder(probe)
    out = tmp_path / "stage"
    rc = provision.main(["--fleet", str(fleet.root), "--device-id", "sj-001", "--port",
                         "/dev/ttyUSB0", "--out", str(out)], run=rec)
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert lines[0]["config"]["mqtt_password"] == "***" and lines[0]["board"] == "esp32_lte"
    assert lines[-1]["removed"] == ["/lib/envbox/firmware/gone.mpy", "/lib/firmware/app.mpy",
                                    "/safe_mode"]
    probe_call, copy_call = rec.calls
    assert probe_call[3] == "exec"
    joined = " ".join(copy_call)
    assert "fs rm :/lib/envbox/firmware/gone.mpy +" in joined and "fs rm :/safe_mode +" in joined
    assert "fs rm :/lib/firmware/app.mpy +" in joined
    assert copy_call[-1] == "reset" and ":config.json" in joined
    assert not any(":/data" in c for c in copy_call)
    # the staged config.json is the fleet's, private
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == fleet.box_config("sj-001")
    assert (out / "config.json").stat().st_mode & 0o777 == 0o600
    inv = F.Fleet(fleet.root).inventory["sj-001"]
    assert inv["flashed_at"] and inv["micropython"] == "1.25.0"
    assert inv["flashed_firmware"] == F.firmware_version()


def test_flash_refuses_a_board_that_cannot_run_the_image(tmp_path, fleet, capsys):
    rec = Recorder({"platform": "esp32", "version": [1, 22, 0], "mpy": 6, "files": []})
    rc = provision.main(["--fleet", str(fleet.root), "--device-id", "sj-001", "--port",
                         "/dev/ttyUSB0", "--out", str(tmp_path / "stage")], run=rec)
    assert rc == 1 and "needs 1.24.0" in capsys.readouterr().err
    assert len(rec.calls) == 1, "nothing copied"
    assert not F.Fleet(fleet.root).inventory["sj-001"].get("flashed_at")


def test_flash_settings_come_from_the_fleet_only(tmp_path, fleet, capsys):
    rc = provision.main(["--fleet", str(fleet.root), "--device-id", "sj-001", "--apn", "x",
                         "--out", str(tmp_path / "s")])
    assert rc == 2 and "from the fleet" in capsys.readouterr().err
    rc = provision.main(["pico_w", "--fleet", str(fleet.root), "--device-id", "sj-001",
                         "--out", str(tmp_path / "s")])
    assert rc == 2 and "is a esp32_lte" in capsys.readouterr().err
    rc = provision.main(["--fleet", str(fleet.root), "--device-id", "sj-001",
                         "--micropython", "x.bin", "--out", str(tmp_path / "s")])
    assert rc == 2 and "--micropython needs --port" in capsys.readouterr().err
