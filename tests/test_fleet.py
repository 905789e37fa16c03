"""`envbox provision` (tools/fleet.py) and the host half of `envbox config push`
(tools/configpush.py), without a broker: 40 boxes from a CSV, the broker's password file made by
mosquitto_passwd (checked against mosquitto's hash), idempotent re-runs, rotation, revocation,
bad CSVs; the signed message checked against Python's own hmac and the firmware's unwrap(). The
same files against the real broker and the MicroPython box: tests/test_fleet_e2e.py."""

import csv
import hashlib
import hmac
import json

import pytest

from envbox import configpush, fleet as F
from envbox.firmware import config as boxconfig

CA = """-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUE2PtcCKIK/CXP60cm3sFMkU4K1EwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZW52Ym94LXRlc3QtY2EwIBcNMjYxMjAzMDUxMzQwWhgPMjEy
NjExMDkwNTEzNDBaMBkxFzAVBgNVBAMMDmVudmJveC10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEqSFmqxYefxZUdFO2BD1eS5vLrnWtEvKC/eYdUO3Q
4AmJUdk3DMGlLLBck1v3sYPXewUi9Uq3RFk83YVTq+nstaNTMFEwHQYDVR0OBBYE
FHFNm0Wp0l8jAw8z4exRnpRXB8uRMB8GA1UdIwQYMBaAFHFNm0Wp0l8jAw8z4exR
npRXB8uRMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgZH2j5l8o
1glKTxZ/jKGT4LbTnO0vxiuaRGKlUGU6xRACIQDFb5H3w97dhHp5lpHVJMSd3Ad6
r1pNn710/IoQrAuQHg==
-----END CERTIFICATE-----
"""


def write_csv(path, n=40):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "board", "modules", "apn", "modem", "wifi_ssid",
                    "wifi_password"])
        for i in range(1, n + 1):
            if i % 4:
                w.writerow([f"sj-{i:03d}", "esp32_lte", "pms5003,ze03_no2,sht4x", "cmnet",
                            "a7670" if i % 2 else "sim7600", "", ""])
            else:
                w.writerow([f"sj-{i:03d}", "pico_w", "pms5003,sht4x", "", "", "depot",
                            "depot-pw"])
    return path


def run(tmp_path, *args, csv_path=None):
    csv_path = csv_path or tmp_path / "boxes.csv"
    (tmp_path / "ca.pem").write_text(CA)
    return F.main([str(csv_path), "--fleet", str(tmp_path / "fleet"), *args])


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_forty_boxes_from_a_csv(tmp_path, capsys):
    write_csv(tmp_path / "boxes.csv")
    assert run(tmp_path, "--broker", "mqtt.fleet.example:8883", "--ca",
               str(tmp_path / "ca.pem")) == 0
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert out[-1]["boxes"] == 40 and out[-1]["created"] == 43     # 40 boxes + 3 services
    root = tmp_path / "fleet"
    fl = F.Fleet(root)
    accounts = fl.secrets["accounts"]
    assert set(accounts) == {f"sj-{i:03d}" for i in range(1, 41)} | set(F.SERVICE_ACCOUNTS)
    # every password and key different; secrets, configs and the password file private
    assert len({a["password"] for a in accounts.values()}) == 43
    assert len({a["config_key"] for a in accounts.values() if "config_key" in a}) == 40
    for p in (root / "secrets.json", fl.passwd_path, fl.config_path("sj-001")):
        assert p.stat().st_mode & 0o777 == 0o600, p
    # the password file is mosquitto_passwd's ($7$: PBKDF2-SHA512), one line per account
    lines = dict(ln.split(":", 1) for ln in fl.passwd_path.read_text().splitlines())
    assert set(lines) == set(accounts)
    for u, h in lines.items():
        assert h.startswith("$7$") and F.verify_hash(h, accounts[u]["password"]), u
        assert not F.verify_hash(h, accounts[u]["password"] + "x")
    # a box's config.json: its network and modules, its login, the CA, the broker, its key
    c = fl.box_config("sj-001")
    assert c["device_id"] == "sj-001" and c["broker"] == "mqtt.fleet.example:8883"
    assert c["apn"] == "cmnet" and c["modem"] == "a7670"
    assert c["modules"] == ["pms5003", "ze03_no2", "sht4x"]
    assert c["mqtt_password"] == accounts["sj-001"]["password"]
    assert c["config_key"] == accounts["sj-001"]["config_key"] and c["ca_pem"] == CA
    assert "insecure" not in c
    p = fl.box_config("sj-004")
    assert p["wifi_ssid"] == "depot" and "apn" not in p
    # the inventory: device, board, firmware version, when provisioned
    inv = list(csv.DictReader(open(root / "inventory.csv")))
    assert len(inv) == 40
    assert {r["board"] for r in inv} == {"esp32_lte", "pico_w"}
    assert all(r["firmware_version"] == F.firmware_version() and r["provisioned_at"]
               for r in inv)


def test_a_second_run_changes_nothing(tmp_path, capsys):
    write_csv(tmp_path / "boxes.csv")
    assert run(tmp_path, "--broker", "h.example:8883", "--ca", str(tmp_path / "ca.pem")) == 0
    before = snapshot(tmp_path / "fleet")
    capsys.readouterr()
    assert run(tmp_path) == 0      # the broker and CA are remembered
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert out[-1] == {"fleet": str(tmp_path / "fleet"), "boxes": 40, "unchanged": 40,
                       "passwd": str(tmp_path / "fleet" / "mosquitto" / "envbox.passwd")}
    assert snapshot(tmp_path / "fleet") == before, "no file rewritten"


def test_rotate_one_box_and_a_service_account_then_revoke(tmp_path, capsys):
    write_csv(tmp_path / "boxes.csv", 5)
    assert run(tmp_path, "--broker", "h.example:8883", "--ca", str(tmp_path / "ca.pem")) == 0
    fl = F.Fleet(tmp_path / "fleet")
    old = {u: dict(a) for u, a in fl.secrets["accounts"].items()}
    old_lines = F.read_passwd(fl.passwd_path)
    assert run(tmp_path, "--rotate", "sj-003,envbox-config") == 0
    fl = F.Fleet(tmp_path / "fleet")
    new = fl.secrets["accounts"]
    lines = F.read_passwd(fl.passwd_path)
    changed = {u for u in new if new[u] != old[u]}
    assert changed == {"sj-003", "envbox-config"}
    assert new["sj-003"]["config_key"] != old["sj-003"]["config_key"]
    assert fl.box_config("sj-003")["mqtt_password"] == new["sj-003"]["password"]
    assert {u for u in lines if lines[u] != old_lines[u]} == changed
    assert F.verify_hash(lines["sj-003"], new["sj-003"]["password"])
    # revoke: the CSV no longer lists sj-005
    write_csv(tmp_path / "boxes.csv", 4)
    assert run(tmp_path, "--revoke", "sj-005") == 0
    fl = F.Fleet(tmp_path / "fleet")
    assert "sj-005" not in F.read_passwd(fl.passwd_path)
    assert "sj-005" not in fl.secrets["accounts"]
    assert not fl.config_path("sj-005").exists()
    assert fl.inventory["sj-005"]["revoked_at"]
    # every box rotated at once
    capsys.readouterr()
    assert run(tmp_path, "--rotate") == 0
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert out[-1]["rotated"] == 4


@pytest.mark.parametrize("rows,needle", [
    ([["sj-1", "esp32_lte", "", "cmnet"], ["sj-1", "esp32_lte", "", "cmnet"]], ":3: device id"),
    ([["sj-1", "esp32_lte", "", ""]], ":2: esp32_lte needs apn"),
    ([["sj-1", "pico_w", "", ""]], "pico_w needs wifi_ssid"),
    ([["sj 1", "pico_w", "", ""]], "printable ASCII"),
    ([["envbox-gateway", "esp32_lte", "", "x"]], "service accounts"),
    ([["sj-1", "esp8266", "", ""]], "board 'esp8266'"),
])
def test_bad_csv_rows_are_refused_with_their_line(tmp_path, capsys, rows, needle):
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "board", "modules", "apn"])
        w.writerows(rows)
    assert run(tmp_path, "--broker", "h:8883", "--ca", str(tmp_path / "ca.pem")) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "fleet" / "secrets.json").exists()


def test_the_shipped_acl_needs_no_per_device_entries_and_a_bare_one_is_refused(tmp_path,
                                                                               capsys):
    F.check_acl(F.REPO / "config" / "mosquitto.acl")
    write_csv(tmp_path / "boxes.csv", 2)
    (tmp_path / "acl").write_text("user envbox-gateway\ntopic read envbox/v1/#\n")
    assert run(tmp_path, "--broker", "h:8883", "--ca", str(tmp_path / "ca.pem"),
               "--acl", str(tmp_path / "acl")) == 2
    assert "per-device" in capsys.readouterr().err


# ---- config push: the signed message -----------------------------------------------------------

@pytest.fixture
def small_fleet(tmp_path):
    write_csv(tmp_path / "boxes.csv", 2)
    assert run(tmp_path, "--broker", "h:8883", "--ca", str(tmp_path / "ca.pem")) == 0
    return F.Fleet(tmp_path / "fleet")


def test_push_signs_what_the_box_verifies(small_fleet):
    fl = small_fleet
    doc = '{\n  "period_s": 20,\n  "cal": {"pm25_ugm3": {"offset": -1.5, "slope": 0.93}}\n}\n'
    msg, version = configpush.prepare(fl, "sj-001", doc)
    assert version == 1
    key = bytes.fromhex(fl.account("sj-001")["config_key"])
    sig, body = msg[:64], msg[65:]
    # Python's hmac agrees with the firmware's few lines
    assert sig.decode() == hmac.new(key, b"sj-001\n" + body, hashlib.sha256).hexdigest()
    assert boxconfig.unwrap(key, b"sj-001", msg) == (body, None)
    assert json.loads(body) == {"version": 1, "period_s": 20,
                                "cal": {"pm25_ugm3": {"offset": -1.5, "slope": 0.93}}}
    assert b"\n" not in body and b" " not in body, "sent compact"
    # another box's key does not open it
    key2 = bytes.fromhex(fl.account("sj-002")["config_key"])
    assert boxconfig.unwrap(key2, b"sj-001", msg)[1] == "bad signature"


def test_push_refuses_what_the_box_would_refuse(small_fleet):
    fl = small_fleet
    with pytest.raises(F.UsageError, match="period_s"):
        configpush.prepare(fl, "sj-001", '{"period_s": 7}')
    with pytest.raises(F.UsageError, match="unknown key"):
        configpush.prepare(fl, "sj-001", '{"period": 10}')
    with pytest.raises(F.UsageError, match="not JSON"):
        configpush.prepare(fl, "sj-001", '{"period_s": 10')
    # larger than 2 KB even when compact: every channel with a calibration
    names = [n for n, *_ in boxconfig.wire.CHANNELS]
    cal = {n: {"offset": -1234.56789012345678, "slope": 1.2345678901234567} for n in names}
    doc = {"cal": cal, "channels": names * 3}
    assert len(json.dumps(doc, separators=(",", ":"))) > 2048
    with pytest.raises(F.UsageError, match="2048"):
        configpush.prepare(fl, "sj-001", json.dumps(doc))
    # the 8 KB document (70 bytes pretty-printed to 8 KB) goes out compact
    big = '{"version": 5, "period_s": 20' + " " * 8000 + "}"
    msg, v = configpush.prepare(fl, "sj-001", big)
    assert len(msg) < 200 and v == 5
    # versions only go up
    configpush.record_pushed(fl, "sj-001", 5)
    with pytest.raises(F.UsageError, match="not newer"):
        configpush.prepare(fl, "sj-001", '{"version": 5, "period_s": 30}')
    assert configpush.prepare(fl, "sj-001", '{"period_s": 30}')[1] == 6
    with pytest.raises(F.UsageError, match="no such account"):
        configpush.prepare(fl, "sj-099", '{"period_s": 30}')
