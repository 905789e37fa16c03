"""Issue 11 §1, §2 and §4 end to end: a fleet provisioned with `envbox provision` (its password
file, made by mosquitto_passwd, is the broker's), real mosquitto with the shipped configuration
(TLS listener with a certificate from a CA this test makes with openssl, logins, the ACL), and
the box's firmware under the MicroPython Unix port on the sim board, which reads the provisioned
config.json as a real board does (BoardBase.load_net).

- a provisioned box logs in as its device id over TLS and its samples are acknowledged;
- a broker certificate from the fleet's CA for another host name is refused by the box (the Unix
  port's ssl, mbedTLS as on the ESP32 port, checks the name: CN/SAN mismatch);
- a box without credentials and without `insecure: true` never connects; with it, it connects
  and its status says `insecure: true`;
- `envbox config push` delivers a validated, signed document the box applies; a forged one, an
  unsigned one and an old signed one replayed are refused with their reasons;
- the issue's 8,074-byte retained config (a broker without the shipped size limit) gives a
  `refused` status within 10 virtual seconds of the box's connection, the link stays up and the
  journal drains to 0."""

from __future__ import annotations

import csv
import json
import shutil
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envbox import configpush, fleet as F, mpybuild, servers
from envbox.firmware import config as boxconfig
from envbox.firmware import wire
from envbox.simulator.run import Simulation
from test_broker_tls import make_ca, make_cert
from test_firmware_resilience import _firmware, _log_tail, _virtual_now, _wait_exit, rig  # noqa: F401

pytestmark = pytest.mark.slow
DEVICE = "sj-001"
TLS_HEAP = "256k"       # mbedTLS takes its buffers from the MicroPython heap on the Unix port


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "fleet-ca")
    return {"ca": ca,
            "right": make_cert(d, "fleet-ca", "broker", "DNS:localhost"),
            "wrong_host": make_cert(d, "fleet-ca", "elsewhere", "DNS:broker.elsewhere.test")}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("fleet")
    with open(d / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "board", "modules", "apn"])
        w.writerow([DEVICE, "esp32_lte", "pms5003", "cmnet"])
        w.writerow(["sj-002", "esp32_lte", "pms5003", "cmnet"])
    assert F.main([str(d / "boxes.csv"), "--fleet", str(d / "fleet"), "--broker",
                   "localhost:8883", "--ca", str(pki["ca"])]) == 0
    return F.Fleet(d / "fleet")


class FleetBroker(servers.Mosquitto):
    """The shipped configuration with the fleet's own password file (as installed on the Pi)."""

    def __init__(self, workdir, fleet, **kw):
        super().__init__(workdir, users={"-": "-"}, **kw)   # logins and the ACL on
        self.fleet = fleet

    def write_passwords(self):
        path = self.dir / "passwd"
        shutil.copy(self.fleet.passwd_path, path)
        path.chmod(0o600)
        return path


class Watcher:
    """The box's data and status, read on the loopback listener; acknowledges like a gateway
    (retained KIND_ACK ranges under its own name). `clock` stamps each status message."""

    def __init__(self, port, user=None, password=None, ack_as="envbox-gateway", clock=None):
        self.samples: list[dict] = []
        self.status: list[tuple[float, object]] = []
        self.held: set[int] = set()
        self.clock = clock or (lambda: 0.0)
        self.ack_as = ack_as
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user or "watcher",
                        clean_session=False)
        if user:
            c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(
            [(f"envbox/v1/{DEVICE}/data", 1), (f"envbox/v1/{DEVICE}/status", 1)])
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        servers.eventually(lambda: c.is_connected(), 10, what="watcher connected")

    def _on_message(self, client, userdata, msg):
        with self.lock:
            if msg.topic.endswith("/status"):
                p = msg.payload
                self.status.append((self.clock(), json.loads(p) if p.startswith(b"{") else p))
                return
            for d in wire.decode_many(msg.payload):
                self.samples.append(d)
                self.held.add(d["seq"])
            ranges = []
            for s in sorted(self.held):
                if ranges and s == ranges[-1][1]:
                    ranges[-1][1] = s + 1
                else:
                    ranges.append([s, s + 1])
            client.publish(f"envbox/v1/{DEVICE}/ack/{self.ack_as}",
                           wire.encode_ack(ranges[-16:]), qos=1, retain=True)

    def docs(self):
        with self.lock:
            return [d for _t, d in self.status if isinstance(d, dict)]

    def config_answers(self):
        return [d for d in self.docs() if "config" in d]

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def box_config(tmp_path, fleet, dev=DEVICE, drop=(), **extra):
    cfg = fleet.box_config(dev)
    for k in drop:
        cfg.pop(k, None)
    cfg.update(extra)
    p = tmp_path / f"{dev}-config.json"
    p.write_text(json.dumps(cfg))
    return p


def _start(tmp_path, made, broker_port, cfg_path, minutes, seed=5, warp=60, tls_port=None,
           heap=TLS_HEAP):
    sim = Simulation(tmp_path / "sim", device=DEVICE, minutes=minutes, warp=warp, seed=seed)
    sim.start()
    made["sims"].append(sim)
    env = {"ENVBOX_BOX_CONFIG": str(cfg_path)}
    if tls_port:
        env["ENVBOX_BROKER"] = f"localhost:{tls_port}"
    fw = _firmware(tmp_path, made, sim, broker_port, mpybuild.build(tmp_path / "mpy"),
                   heap=heap, env=env)
    return sim, fw


def _gateway(fleet, broker, **kw):
    gw = fleet.account("envbox-gateway")["password"]
    return Watcher(broker.port, "envbox-gateway", gw, **kw)


def test_a_provisioned_box_logs_in_over_tls_as_its_device_id(rig, pki, fleet):
    tmp_path, made = rig
    broker = FleetBroker(tmp_path / "mq", fleet, tls=pki["right"]).start()
    made["servers"].append(broker)
    w = _gateway(fleet, broker)
    made["closers"].append(w.stop)
    sim, fw = _start(tmp_path, made, broker.port, box_config(tmp_path, fleet), 6,
                     tls_port=broker.tls_port)
    _wait_exit(fw, tmp_path, 120)
    log = _log_tail(tmp_path, 10 ** 6)
    seqs = sorted({d["seq"] for d in w.samples})
    taken = int(log.rsplit("done: samples=", 1)[1].split()[0])
    assert taken >= 10 and seqs == list(range(taken)), log[-3000:]
    assert "mqtt link lost" not in log and " unacked=0 " in log, log[-3000:]
    # over the TLS listener, logged in as its device id (client id = login)
    blog = broker.log_path.read_text()
    assert f"as {DEVICE} " in blog and f"u'{DEVICE}'" in blog, blog[-2000:]
    docs = w.docs()
    assert docs and not any(d.get("insecure") for d in docs)


def test_a_certificate_for_another_host_name_is_refused(rig, pki, fleet):
    tmp_path, made = rig
    broker = FleetBroker(tmp_path / "mq", fleet, tls=pki["wrong_host"]).start()
    made["servers"].append(broker)
    w = _gateway(fleet, broker)
    made["closers"].append(w.stop)
    sim, fw = _start(tmp_path, made, broker.port, box_config(tmp_path, fleet), 3,
                     tls_port=broker.tls_port)
    servers.eventually(lambda: _log_tail(tmp_path).count("mqtt link lost") >= 2, 60,
                       what="the box to refuse the broker twice")
    fw.kill()
    fw.wait()
    log = _log_tail(tmp_path, 10 ** 6)
    # mbedTLS: "The certificate Common Name (CN) does not match with the expected CN"
    assert "does not match" in log, log[-3000:]
    assert not w.samples and not w.docs(), "nothing of the box reached the broker"
    assert f"u'{DEVICE}'" not in broker.log_path.read_text(), "no login was ever sent"


def test_no_credentials_no_connection_unless_insecure_which_the_status_reports(rig, pki, fleet):
    tmp_path, made = rig
    # the shipped broker with logins: a box with no password and no CA does not even try
    broker = FleetBroker(tmp_path / "mq", fleet, tls=pki["right"]).start()
    made["servers"].append(broker)
    cfg = box_config(tmp_path, fleet, drop=("mqtt_password", "ca_pem"))
    sim, fw = _start(tmp_path, made, broker.port, cfg, 2)
    servers.eventually(lambda: "not connecting" in _log_tail(tmp_path), 60,
                       what="the box to refuse to connect")
    servers.eventually(lambda: _virtual_now(sim) >= 90, 60, what="90 virtual s")
    fw.kill()
    fw.wait()
    assert "mqtt connected" not in _log_tail(tmp_path, 10 ** 6)
    assert "New client connected" not in broker.log_path.read_text()
    # the same box with insecure: true, against a development broker (anonymous, plaintext)
    dev_broker = servers.Mosquitto(tmp_path / "mq-dev").start()
    made["servers"].append(dev_broker)
    w = Watcher(dev_broker.port, ack_as="dev")
    made["closers"].append(w.stop)
    cfg = box_config(tmp_path, fleet, drop=("mqtt_password", "ca_pem"), insecure=True)
    shutil.rmtree(tmp_path / "sim")
    shutil.rmtree(tmp_path / "flash")
    sim, fw = _start(tmp_path, made, dev_broker.port, cfg, 2, seed=6)
    _wait_exit(fw, tmp_path, 120)
    docs = w.docs()
    assert docs and all(d.get("insecure") is True for d in docs), docs[-1:]


def test_config_push_signed_applied_forgeries_and_replays_refused(rig, pki, fleet):
    tmp_path, made = rig
    broker = FleetBroker(tmp_path / "mq", fleet, tls=pki["right"]).start()
    made["servers"].append(broker)
    w = _gateway(fleet, broker)
    made["closers"].append(w.stop)
    sim, fw = _start(tmp_path, made, broker.port, box_config(tmp_path, fleet), 30, warp=30,
                     tls_port=broker.tls_port)
    servers.eventually(lambda: w.docs(), 60, what="the box's first status")
    f = fleet.root
    target = f"localhost:{broker.tls_port}"

    def push(doc, *extra):
        p = tmp_path / "doc.json"
        p.write_text(json.dumps(doc, indent=2))
        return configpush.main(["push", DEVICE, str(p), "--fleet", str(f), "--broker", target,
                                "--wait", "30", *extra])

    # v1: validated, signed, applied; what was sent is kept to replay it later
    v1, _ = configpush.prepare(fleet, DEVICE, json.dumps({"version": 1, "period_s": 20}))
    assert push({"version": 1, "period_s": 20}) == 0
    assert w.config_answers()[-1] == {"config": "applied", "version": 1}
    # v2 (the version counted up by the tool)
    assert push({"period_s": 30}) == 0
    assert w.config_answers()[-1] == {"config": "applied", "version": 2}
    # the config account's password alone does not make a valid document: without the box's
    # key the signature is wrong; unsigned is refused; the old v1 replayed is refused
    cfg_pw = fleet.account("envbox-config")["password"]
    bad_key = bytes(32)
    for msg, why in ((boxconfig.sign(bad_key, DEVICE.encode(), b'{"version":9,"period_s":60}'),
                      "bad signature"),
                     (b'{"version": 9, "period_s": 60}', "not signed"),
                     (v1, "version 1 is not newer than the applied 2")):
        n = len(w.config_answers())
        _publish_config(broker.port, "envbox-config", cfg_pw, msg)
        servers.eventually(lambda: len(w.config_answers()) > n, 30, what=f"refused: {why}")
        ans = w.config_answers()[-1]
        assert ans == {"config": "refused", "error": why, "kept_version": 2}, ans
    servers.eventually(lambda: any(d.get("config_version") == 2 and d.get("period_s") == 30
                                   for d in w.docs()), 60, what="a status with v2 in force")
    # the tool itself refuses to send what the box would refuse
    assert push({"version": 2, "period_s": 60}) == 2
    assert push({"version": 3, "period_s": 7}) == 2
    fw.kill()
    fw.wait()
    assert "mqtt link lost" not in _log_tail(tmp_path, 10 ** 6)


def _publish_config(port, user, password, payload, dev=DEVICE):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user or "cfg")
    if user:
        c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(f"envbox/v1/{dev}/config", payload, qos=1, retain=True)
    info.wait_for_publish(10)
    assert info.is_published()
    c.loop_stop()
    c.disconnect()


def test_an_8kb_retained_config_is_refused_in_seconds_without_losing_the_link(rig):
    """The issue's finding: 8,074 bytes (a valid 70-byte document, pretty-printed) on a broker
    that does not cap message sizes (the shipped one drops anything over 4,000 bytes). The box
    reads past it, acknowledges it and answers refused; before, it dropped the link on every
    redelivery and its journal grew."""
    tmp_path, made = rig
    broker = servers.Mosquitto(tmp_path / "mq", extra_conf="message_size_limit 0\n").start()
    made["servers"].append(broker)
    doc = json.dumps({"version": 3, "period_s": 20, "channels": ["pm25_ugm3", "pm10_ugm3"]},
                     indent=4)
    big = (doc[:-1] + " " * (8074 - len(doc)) + "}").encode()
    assert len(big) == 8074 and json.loads(big)["version"] == 3
    _publish_config(broker.port, None, None, big)       # retained before the box comes
    sim = Simulation(tmp_path / "sim", device=DEVICE, minutes=4, warp=10, seed=7)
    w = Watcher(broker.port, ack_as="collector", clock=lambda: _virtual_now(sim))
    made["closers"].append(w.stop)
    sim.start()
    made["sims"].append(sim)
    fw = _firmware(tmp_path, made, sim, broker.port, mpybuild.build(tmp_path / "mpy"))
    _wait_exit(fw, tmp_path, 180)
    log = _log_tail(tmp_path, 10 ** 6)
    with w.lock:
        status = list(w.status)
    online = [t for t, d in status if d == b"online"]
    refused = [(t, d) for t, d in status if isinstance(d, dict) and d.get("config") == "refused"]
    assert online and refused, status[:5]
    t_ref, ans = refused[0]
    assert ans["error"] == "larger than 4096 bytes" and ans["kept_version"] == 0
    assert t_ref - online[0] <= 10, f"refused {t_ref - online[0]:.1f} virtual s after online"
    assert len(online) == 1 and "mqtt link lost" not in log, "the link stayed up"
    assert " reconnects=0 " in log and " unacked=0 " in log, log[-2000:]
    depths = [d["journal_depth"] for t, d in status
              if isinstance(d, dict) and "journal_depth" in d and t > t_ref]
    # the journal does not grow while the oversized config sits retained (the issue: 0 -> 302)
    assert depths and max(depths) <= 2, depths
    seqs = sorted({d["seq"] for d in w.samples})
    assert seqs and seqs == list(range(len(seqs)))
