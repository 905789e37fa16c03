"""Remote configuration and the clock before the first fix, for real: the MicroPython firmware,
mosquitto and the simulator (helpers from test_firmware_resilience)."""

import json

import paho.mqtt.client as mqtt
import pytest

from envbox import flashimage
from envbox import servers
from envbox.firmware import wire
from envbox.simulator.run import Simulation

from test_firmware_resilience import (DEVICE, Collector, _firmware, _log_tail, _virtual_now,
                                      _wait_exit, check_stream, rig)  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
CONFIG_TOPIC = f"envbox/v1/{DEVICE}/config"


def _publish_retained(port, payload: bytes):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cfg-publisher")
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(CONFIG_TOPIC, payload, qos=1, retain=True)
    info.wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def _pms_truth(sim):
    out = {}
    with open(sim.ground_truth_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "pms5003" and r.get("status") == "ok":
                out[r["slot"]] = r
    return out


def test_remote_config_validated_persisted_applied_without_reboot(rig):
    tmp_path, made = rig
    broker = servers.Mosquitto(tmp_path / "mosquitto").start()
    made["servers"].append(broker)
    coll = Collector(broker.port, "collector-config")
    made["closers"].append(coll.stop)
    sim = Simulation(tmp_path / "sim", device=DEVICE, minutes=40, warp=60, seed=9)
    sim.start()
    made["sims"].append(sim)
    from envbox import mpybuild
    mpy = mpybuild.build(tmp_path / "mpy")
    good = {"version": 2, "period_s": 20, "channels": ["pm25_ugm3", "pm10_ugm3"],
            "cal": {"pm25_ugm3": {"offset": 1.0, "slope": 2.0}}}
    fw = _firmware(tmp_path, made, sim, broker.port, mpy)
    servers.eventually(lambda: len(coll.samples) >= 6, 60, what="samples at the default period")
    _publish_retained(broker.port, json.dumps(good).encode())
    servers.eventually(lambda: any(s.get("config") == "applied" for s in coll.status), 30,
                       what="config applied status")
    n_applied = len(coll.samples)
    servers.eventually(lambda: _virtual_now(sim) >= 12 * 60, 60, what="minute 12")
    # a bad document: refused, reported, the old one kept
    _publish_retained(broker.port, b'{"version": 3, "period_s": 7}')
    servers.eventually(lambda: any(s.get("config") == "refused" for s in coll.status), 30,
                       what="config refused status")
    refused = next(s for s in coll.status if s.get("config") == "refused")
    assert "period_s" in refused["error"] and refused["kept_version"] == 2
    servers.eventually(lambda: _virtual_now(sim) >= 20 * 60, 60, what="minute 20")
    # persisted: on flash, and in force after a restart without the retained topic
    assert json.loads(flashimage.lfs_files(tmp_path / "flash" / "flash.bin")["/config.json"])[
        "version"] == 2
    _publish_retained(broker.port, b"")          # clears the retained config
    fw.kill()
    fw.wait()
    fw = _firmware(tmp_path, made, sim, broker.port, mpy)
    _wait_exit(fw, tmp_path, 120)
    by_seq = check_stream(coll.samples)
    after = [d for d in sorted(by_seq.values(), key=lambda d: d["seq"])
             if d["seq"] >= coll.samples[n_applied]["seq"] + 2]
    assert len(after) > 40
    truth = _pms_truth(sim)
    checked = 0
    for d in after:
        assert d["t_utc_s"] % 20 == 0, "period 20 s on the grid"
        assert set(d["channels"]) == {"pm25_ugm3", "pm10_ugm3"}, "only the enabled channels"
        r = truth.get(d["t_utc_s"])
        c = d["channels"]["pm25_ugm3"]
        # flagged exactly when a correction was applied (a channel without a value has none)
        assert bool(d["flags"] & wire.FLAG_CALIBRATED) == (c["raw"] is not None), d
        if r and c["status"] == "ok":
            assert c["raw"] == r["pm25_ugm3"] * 2 + 1, "corrected = raw x slope + offset"
            assert d["channels"]["pm10_ugm3"]["raw"] == r["pm10_ugm3"], "uncorrected channel"
            checked += 1
    assert checked > 20
    boots = [s for s in coll.status if s.get("boot") == 2]
    assert boots and boots[-1]["config_version"] == 2 and boots[-1]["period_s"] == 20


def test_samples_before_the_first_fix_are_held_then_stamped_never_1970(rig):
    tmp_path, made = rig
    broker = servers.Mosquitto(tmp_path / "mosquitto").start()
    made["servers"].append(broker)
    coll = Collector(broker.port, "collector-nofix")
    made["closers"].append(coll.stop)
    # the receiver has no fix (and so no time) for the first 180 virtual seconds (the firmware
    # boots about a virtual minute into the run)
    sim = Simulation(tmp_path / "sim", device=DEVICE, minutes=10, warp=60, seed=2,
                     gnss_no_fix_s=180)
    from envbox import mpybuild
    mpy = mpybuild.build(tmp_path / "mpy")    # before the virtual clock runs (a minute of it)
    sim.start()
    made["sims"].append(sim)
    fw = _firmware(tmp_path, made, sim, broker.port, mpy)
    _wait_exit(fw, tmp_path, 120)
    by_seq = check_stream(coll.samples)
    ds = [by_seq[k] for k in sorted(by_seq)]
    held = [d for d in ds if d["flags"] & wire.FLAG_TIME_FROM_TICKS]
    assert len(held) >= 5, _log_tail(tmp_path)
    assert ds[:len(held)] == held, "held samples come first, in order"
    start = sim.start_virtual_s
    for d in ds:
        assert start - 60 <= d["t_utc_s"] <= sim.run_until_virtual_s + 60, "never 1970/2000"
    ts = [d["t_utc_s"] for d in ds]
    assert ts == sorted(ts)
    assert all(d["t_utc_s"] < start + 180 + 10 for d in held)
    steps = [b - a for a, b in zip(ts[:len(held)], ts[1:len(held)])]
    assert all(9 <= s <= 11 for s in steps), steps   # one period of the tick counter apart


def _make_certs(d):
    """A CA and a server certificate for 127.0.0.1 (IP and DNS SAN), with openssl."""
    import subprocess
    d.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=envbox-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_tls_to_the_broker(rig):
    """The box connects with TLS (certificate verified against the CA) and delivers every sample.
    mbedTLS takes its buffers from the MicroPython heap on the Unix port: 256 KB here."""
    tmp_path, made = rig
    ca, cert, key = _make_certs(tmp_path / "pki")
    tls_port = servers.free_port()
    broker = servers.Mosquitto(tmp_path / "mosquitto", extra_conf=(
        f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")).start()
    made["servers"].append(broker)
    coll = Collector(broker.port, "collector-tls")          # plain listener, same broker
    made["closers"].append(coll.stop)
    from envbox import mpybuild
    mpy = mpybuild.build(tmp_path / "mpy")      # before the virtual clock starts (seconds)
    sim = Simulation(tmp_path / "sim", device=DEVICE, minutes=5, warp=60, seed=4)
    sim.start()
    made["sims"].append(sim)
    fw = _firmware(tmp_path, made, sim, tls_port, mpy, heap="256k",
                   env={"ENVBOX_MQTT_TLS_CA": str(ca)})
    _wait_exit(fw, tmp_path, 120)
    # TLS waits for the clock (certificate dates), so the first samples are journaled before
    # the first connection and go newest first: not in seq order
    by_seq = check_stream(coll.samples, ordered=False)
    taken = int(_log_tail(tmp_path).rsplit("done: samples=", 1)[1].split()[0])
    assert taken >= 20 and sorted(by_seq) == list(range(taken)), _log_tail(tmp_path)
    assert "mqtt link lost" not in _log_tail(tmp_path)
    # and a broker whose certificate the CA did not sign is refused
    other_ca, _c, _k = _make_certs(tmp_path / "pki-other")
    (tmp_path / "flash2").mkdir()
    sim2 = Simulation(tmp_path / "sim2", device=DEVICE, minutes=2, warp=60, seed=4)
    sim2.start()
    made["sims"].append(sim2)
    n = len(coll.samples)
    fw2 = _firmware(tmp_path, made, sim2, tls_port, mpy, heap="256k",
                    env={"ENVBOX_MQTT_TLS_CA": str(other_ca),
                         "ENVBOX_STATE_DIR": str(tmp_path / "flash2")})
    servers.eventually(lambda: "mqtt link lost" in _log_tail(tmp_path), 30,
                       what="the untrusted broker refused")
    fw2.kill()
    fw2.wait()
    assert len(coll.samples) == n
