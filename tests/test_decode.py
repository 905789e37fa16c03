"""`envbox decode` (tools/decode.py + tools/decode_mp.py under MicroPython), run as the real CLI
on captures built from the golden vectors (tests/vectors/*.json): valid frames with garbage
between them and frames with bad checksums. Expected values come from the vectors' `decoded`
keys and, for NMEA, from pynmea2; none from the code under test."""

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pynmea2
import pytest

VECTORS = Path(__file__).resolve().parent / "vectors"
ENVBOX = os.path.join(os.path.dirname(sys.executable), "envbox")

# No 0x42/0x4D/0xAA/0xFF/0x01/'$'/CR/LF: not a start byte of any protocol here, so every
# garbage byte is skipped on its own and the skipped count is exact.
GARBAGE = bytes([0x00, 0x13, 0x37, 0x5A, 0x99, 0xC3])


def vectors(proto):
    return json.loads((VECTORS / f"{proto}.json").read_text())["vectors"]


def decode(tmp_path, sensor, data, *args, hex_lines=None):
    f = tmp_path / f"{sensor}.cap"
    if hex_lines is not None:
        f.write_text("\n".join(hex_lines) + "\n")
        args = args + ("--hex",)
    else:
        f.write_bytes(data)
    r = subprocess.run([ENVBOX, "decode", sensor, str(f), *args], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert recs and recs[-1].get("summary") is True, r.stdout[-2000:]
    for rec in recs[:-1]:
        assert "ok" in rec and "summary" not in rec
    return recs[:-1], recs[-1]


def capture(vs):
    """garbage, frame, garbage, frame, ... ; returns (bytes, garbage byte count)."""
    out = bytearray()
    for v in vs:
        out += GARBAGE + bytes.fromhex(v["hex"])
    return bytes(out), len(GARBAGE) * len(vs)


def check_counts(summary, ok_frames, bad, garbage, total, other_ok=()):
    """other_ok: good frames the driver counts apart from frames_ok (PMS5003 acks)."""
    assert summary["frames_ok"] == len(ok_frames)
    assert summary["checksum_errors"] == len(bad)
    assert summary["bytes_total"] == total
    # every byte not in a good frame was skipped: the garbage and the bad frames
    assert summary["bytes_skipped"] == garbage + sum(len(bytes.fromhex(v["hex"])) for v in bad)
    assert total == (summary["bytes_skipped"] + summary["bytes_pending"]
                     + sum(len(bytes.fromhex(v["hex"])) for v in list(ok_frames) + list(other_ok)))
    assert summary["bytes_pending"] == 0


def assert_decoded(rec, decoded, keys=None):
    for k in keys or decoded:
        assert rec[k] == pytest.approx(decoded[k]), (k, rec, decoded)


# -- UART modules ---------------------------------------------------------------------------------

def test_pms5003_frames_garbage_and_bad_checksums(tmp_path):
    vs = vectors("pms5003")
    data_ok = [v for v in vs if v["ok"] and v.get("kind") == "data" and "bytes_skipped" not in v]
    acks = [v for v in vs if v["ok"] and v.get("kind") == "ack"]
    bad = [v for v in vs if v.get("error") == "checksum"]
    vs_in = data_ok[:3] + bad[:1] + acks[:1] + data_ok[3:] + bad[1:]
    data, garbage = capture(vs_in)
    recs, summary = decode(tmp_path, "pms5003", data)
    frames = [r for r in recs if r["ok"] and r["kind"] == "data"]
    assert len(frames) == len(data_ok)
    for rec, v in zip(frames, data_ok):
        assert rec["status"] == "ok"
        assert_decoded(rec, v["decoded"])
        assert rec["hex"] == v["hex"]
    assert [r["hex"] for r in recs if r["ok"] and r["kind"] == "ack"] == [a["hex"] for a in acks[:1]]
    errs = [r for r in recs if not r["ok"]]
    assert [e["error"] for e in errs] == ["checksum"] * len(bad)
    assert all(e["status"] == "checksum_error" for e in errs)
    assert summary["acks"] == 1
    check_counts(summary, data_ok, bad, garbage, len(data), other_ok=acks[:1])


def test_pms5003_hex_lines_and_junk_prefixed_vector(tmp_path):
    v = next(v for v in vectors("pms5003") if "bytes_skipped" in v)
    recs, summary = decode(tmp_path, "pms5003", None, hex_lines=["# capture", v["hex"], ""])
    assert len(recs) == 1 and recs[0]["ok"] and recs[0]["line"] == 2
    assert_decoded(recs[0], v["decoded"])
    assert summary["bytes_skipped"] == v["bytes_skipped"]


def test_sds011(tmp_path):
    vs = vectors("sds011")
    data, garbage = capture(vs)
    recs, summary = decode(tmp_path, "sds011", data)
    want = [v for v in vs if v["ok"] and v.get("kind") != "ack"]
    got = [r for r in recs if r["ok"] and r["kind"] == "data"]
    assert len(got) == len(want)
    for rec, v in zip(got, want):
        assert_decoded(rec, v["decoded"])
        assert rec["status"] == "ok"
    assert [r["kind"] for r in recs if r["ok"]].count("ack") == 1
    assert [r["error"] for r in recs if not r["ok"]] == [v["error"] for v in vs if not v["ok"]]
    assert summary["frames_ok"] == len([v for v in vs if v["ok"]])
    assert summary["checksum_errors"] == 1 and summary["framing_errors"] == 1


def test_mhz19b(tmp_path):
    vs = vectors("mhz19b")
    data, garbage = capture(vs)
    recs, summary = decode(tmp_path, "mhz19b", data)
    good = [v for v in vs if v["ok"]]
    bad = [v for v in vs if not v["ok"]]
    got = [r for r in recs if r["ok"]]
    assert len(got) == len(good)
    for rec, v in zip(got, good):
        assert_decoded(rec, v["decoded"])
    assert len([r for r in recs if not r["ok"]]) == len(bad)
    check_counts(summary, good, bad, garbage, len(data))


def test_ze03_o3_given_and_guessed(tmp_path):
    vs = [v for v in vectors("ze03") if v.get("decoded", {}).get("gas_code", 42) == 42]
    data, garbage = capture(vs)
    for args in (("--gas", "o3"), ()):
        recs, summary = decode(tmp_path, "ze03", data, *args)
        assert summary["gas"] == "o3"
        readings = [r for r in recs if r["ok"] and r["kind"] in ("qa", "active")]
        want = [v for v in vs if v["ok"] and v["kind"] in ("qa", "active")]
        assert len(readings) == len(want)
        for rec, v in zip(readings, want):
            assert rec["kind"] == v["kind"]
            assert_decoded(rec, v["decoded"], ("gas_code", "decimals", "conc_raw", "o3_ppb"))
        assert [r["kind"] for r in recs if r["ok"]].count("ack") == 1
        check_counts(summary, [v for v in vs if v["ok"]], [v for v in vs if not v["ok"]],
                     garbage, len(data))


def test_ze03_reply_of_another_gas_is_a_sensor_error(tmp_path):
    no2 = next(v for v in vectors("ze03") if "no2_ppb" in v.get("decoded", {}))
    recs, _ = decode(tmp_path, "ze03", bytes.fromhex(no2["hex"]), "--gas", "co")
    assert recs[0]["ok"] and recs[0]["status"] == "sensor_error"
    assert recs[0]["error"] == "gas_mismatch" and recs[0]["co_ppm"] is None
    recs, summary = decode(tmp_path, "ze03", bytes.fromhex(no2["hex"]))
    assert summary["gas"] == "no2" and recs[0]["no2_ppb"] == no2["decoded"]["no2_ppb"]


def test_ze08(tmp_path):
    vs = vectors("ze08")
    data, garbage = capture(vs)
    recs, summary = decode(tmp_path, "ze08", data)
    good = [v for v in vs if v["ok"]]
    got = [r for r in recs if r["ok"]]
    for rec, v in zip(got, good):
        assert rec["kind"] == v["kind"]
        assert_decoded(rec, v["decoded"])
    check_counts(summary, good, [v for v in vs if not v["ok"]], garbage, len(data))


def test_modbus_replies_exception_and_crc_error(tmp_path):
    vs = [v for v in vectors("modbus") if bytes.fromhex(v["hex"])[0] == 1
          and bytes.fromhex(v["hex"])[1] & 0x7F == 3]
    data, garbage = capture(vs)
    recs, summary = decode(tmp_path, "modbus", data)
    assert summary["function"] == 3 and summary["address"] == 1
    good = [v for v in vs if v["ok"]]
    got = [r for r in recs if r["ok"]]
    assert len(got) == len(good)
    for rec, v in zip(got, good):
        if v.get("kind") == "exception":
            assert rec["kind"] == "exception" and rec["status"] == "sensor_error"
            assert rec["exception"] == v["decoded"]["exception"]
        else:
            assert rec["raw"] == v["decoded"]["raw"]
            assert rec["noise_dba"] == pytest.approx(v["decoded"]["raw"] / 10)
            # the meter's 30..130 dB(A) range: a raw 1 (0.1 dB) is flagged, not dropped
            assert rec["status"] == ("ok" if 300 <= v["decoded"]["raw"] <= 1300 else "out_of_range")
    check_counts(summary, good, [v for v in vs if not v["ok"]], garbage, len(data))
    # function 04 replies only decode as function 04 (chosen automatically)
    f4 = next(v for v in vectors("modbus") if v["ok"] and v["decoded"].get("function") == 4)
    recs, summary = decode(tmp_path, "modbus", GARBAGE + bytes.fromhex(f4["hex"]))
    assert summary["function"] == 4 and recs[0]["raw"] == f4["decoded"]["raw"]


# -- NMEA -----------------------------------------------------------------------------------------

def _iso(d, t):
    return datetime.datetime.combine(d, t.replace(microsecond=0)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_nmea_degrees_and_iso_time_against_pynmea2(tmp_path):
    vs = vectors("nmea")
    good = [v for v in vs if v["ok"]]
    data, garbage = capture(vs)
    recs, summary = decode(tmp_path, "nmea", data)
    sentences = [r for r in recs if r["ok"] and r["kind"] in ("rmc", "gga")]
    assert [r["text"] for r in sentences] == [v["text"] for v in good]
    last_date = None
    for rec in sentences:
        m = pynmea2.parse(rec["text"])
        assert rec["talker"] == m.talker and rec["type"] == m.sentence_type
        if rec["kind"] == "rmc":
            last_date = m.datestamp
            assert rec["time_utc"] == _iso(m.datestamp, m.timestamp)
            assert rec["rmc_status"] == m.status
            if m.status == "A":
                assert rec["status"] == "fix"
                assert rec["speed_kmh"] == pytest.approx(float(m.spd_over_grnd) * 1.852, abs=0.05)
            else:
                assert rec["status"] == "no_fix" and rec["lat_deg"] is None
        else:
            q = int(m.gps_qual)
            assert rec["fix_quality"] == q
            if rec["time_utc"] is not None:
                assert rec["time_utc"] == _iso(last_date, m.timestamp)
            if q:
                assert rec["sats"] == int(m.num_sats)
                assert rec["alt_m"] == pytest.approx(float(m.altitude))
            else:
                assert rec["lat_deg"] is None
        if rec["status"] == "fix":
            # signed decimal degrees; the driver rounds to 1e-7 degree
            assert rec["lat_deg"] == pytest.approx(m.latitude, abs=0.6e-7)
            assert rec["lon_deg"] == pytest.approx(m.longitude, abs=0.6e-7)
    fixes = [r for r in recs if r["ok"] and r["kind"] == "fix"]
    # a fix = an RMC 'A' and a GGA with quality > 0 of the same second
    pairs = {}
    for v in good:
        m = pynmea2.parse(v["text"])
        key = m.timestamp.replace(microsecond=0)
        ok = (m.status == "A") if m.sentence_type == "RMC" else int(m.gps_qual) > 0
        pairs.setdefault(key, set()).add((m.sentence_type, ok, v["text"][:2]))
    expected = [k for k, s in pairs.items() if ("RMC", True, "$G") in s and ("GGA", True, "$G") in s]
    assert len(fixes) == len(expected)
    bad = [r for r in recs if not r["ok"]]
    assert sorted(r["error"] for r in bad) == sorted(
        "overlong" if v["error"] == "overlong" else "checksum"
        for v in vs if not v["ok"] and v["error"] != "no_sentence")
    assert summary["frames_ok"] == len(good)
    assert summary["sentences_ok"] == len(good) and summary["fixes"] == len(fixes)


def test_nmea_simulator_sentences_and_midnight(tmp_path):
    # the simulator's format across midnight: the GGA after 23:59:59 takes the next day's date
    text = ["$GPRMC,235959.00,A,3953.00001,N,11628.00002,E,0.027,359.96,311225,,,A",
            "$GPGGA,235959.00,3953.00001,N,11628.00002,E,1,05,0.95,-2.5,M,-8.6,M,,",
            "$GPGGA,000000.00,3953.00001,N,11628.00002,E,1,05,0.95,-2.5,M,-8.6,M,,"]
    lines = []
    for t in text:
        body = t[1:]
        cs = 0
        for c in body.encode():
            cs ^= c
        lines.append("%s*%02X\r\n" % (t, cs))
    recs, summary = decode(tmp_path, "nmea", GARBAGE + "".join(lines).encode())
    assert [r["kind"] for r in recs] == ["rmc", "gga", "fix", "gga"]
    assert recs[1]["time_utc"] == "2025-12-31T23:59:59Z"
    assert recs[3]["time_utc"] == "2026-01-01T00:00:00Z"
    assert recs[2]["course_deg"] == pytest.approx(360.0)     # 359.96 rounds to 360.0 (x10)
    assert summary["bytes_skipped"] == len(GARBAGE)


# -- I2C reads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sensor", ["sht4x", "sht3x", "scd4x"])
def test_i2c_reads_hex_lines(tmp_path, sensor):
    vs = vectors(sensor)
    recs, summary = decode(tmp_path, sensor, None, hex_lines=[v["hex"] for v in vs] + ["0102"])
    assert len(recs) == len(vs) + 1
    for rec, v in zip(recs, vs):
        assert rec["ok"] == v["ok"], (rec, v)
        if not v["ok"]:
            assert rec["error"] == "checksum"
            continue
        if v.get("kind") == "data_ready":
            assert rec["ready"] == v["decoded"]["ready"]
        else:
            assert rec["status"] == "ok"
            assert_decoded(rec, v["decoded"])
    assert recs[-1]["ok"] is False and recs[-1]["error"] == "length"
    assert summary["length_errors"] == 1
    assert summary["checksum_errors"] == len([v for v in vs if not v["ok"]])


def test_sht4x_raw_reads_back_to_back(tmp_path):
    vs = vectors("sht4x")
    data = b"".join(bytes.fromhex(v["hex"]) for v in vs) + b"\x62\x03"
    recs, summary = decode(tmp_path, "sht4x", data)
    assert [r["ok"] for r in recs] == [v["ok"] for v in vs]
    assert recs[0]["temp_c"] == pytest.approx(vs[0]["decoded"]["temp_c"])
    assert summary["bytes_pending"] == 2


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["decode", "bme280", "FILE"], "unknown sensor"),
    (["decode", "pms5003", "MISSING"], "no such file"),
    (["decode", "sht4x", "BADHEX", "--hex"], "not hex"),
])
def test_errors_exit_2_with_a_message(tmp_path, args, needle):
    (tmp_path / "FILE").write_bytes(b"\x00")
    (tmp_path / "BADHEX").write_text("62035e5e353b\n62 03 zz\n")
    args = [str(tmp_path / a) if a in ("FILE", "MISSING", "BADHEX") else a for a in args]
    r = subprocess.run([ENVBOX, *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert needle in r.stderr and r.stdout == ""
    if needle == "not hex":
        assert ":2:" in r.stderr          # the line is named
