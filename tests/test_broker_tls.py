"""The shipped broker config's listeners (issue 11 §2, broker half), against real mosquitto 2.0:
TLS for the boxes, plaintext only on loopback for a local gateway. The tests make their own CA
with openssl. A box (paho here; the firmware's TLS is tested with the firmware) reaches the
gateway and InfluxDB through TLS; a certificate from the trusted CA for another host name is
refused, as is one from a CA the client does not trust, and plaintext on the TLS port."""

from __future__ import annotations

import socket
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envbox.gateway import Gateway
from envbox.gateway import config as gwconfig
from envbox.servers import BROKER_CONF_TEMPLATE, GATEWAY_USER, Mosquitto, eventually
from test_gateway_e2e import (assert_influx_exact, build, influx, influx1_sink,  # noqa: F401
                              uid)

pytestmark = pytest.mark.slow

PW = {GATEWAY_USER: "gw-pw", "sj-001": "pw-1"}


def ossl(d, *args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)


def make_ca(d, name):
    ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt")
    return d / f"{name}.crt"


def make_cert(d, ca, name, san):
    """A server certificate signed by `ca` (make_ca's name) for subjectAltName `san`."""
    ossl(d, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
         f"{name}.key", "-out", f"{name}.csr")
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    ossl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return d / f"{name}.crt", d / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "fleet-ca")
    make_ca(d, "other-ca")
    return {"ca": ca,
            "right": make_cert(d, "fleet-ca", "broker", "IP:127.0.0.1,DNS:localhost"),
            "wrong_host": make_cert(d, "fleet-ca", "elsewhere", "DNS:broker.elsewhere.example"),
            "untrusted": make_cert(d, "other-ca", "impostor", "IP:127.0.0.1,DNS:localhost")}


def tls_client(broker, ca, user="sj-001"):
    """paho as a box: TLS with the fleet CA, host name checked (paho's default)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, PW[user])
    c.tls_set(ca_certs=str(ca))
    return c


def own_address():
    """A non-loopback address of this machine, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))          # no packet is sent: picks the route's address
            a = s.getsockname()[0]
        except OSError:
            return None
    return None if a.startswith("127.") else a


def test_shipped_listeners_tls_for_boxes_plaintext_only_on_loopback():
    lines = [ln.split("#")[0].strip() for ln in BROKER_CONF_TEMPLATE.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    listeners = {}
    cur = None
    for ln in lines:
        if ln.startswith("listener "):
            cur = listeners.setdefault(ln, set())
        elif cur is not None:
            cur.add(ln.split()[0])
    assert set(listeners) == {"listener 1883 127.0.0.1", "listener 8883"}
    assert {"certfile", "keyfile"} <= listeners["listener 8883"]
    assert not {"certfile", "keyfile"} & listeners["listener 1883 127.0.0.1"]


def test_a_box_through_tls_reaches_influxdb_the_gateway_over_loopback(tmp_path, pki, influx,
                                                                        uid):
    broker = Mosquitto(tmp_path / "mq", users=PW, tls=pki["right"]).start()
    try:
        cfg = gwconfig.Config().replace(
            mqtt={"port": broker.port, "username": GATEWAY_USER, "password": PW[GATEWAY_USER]},
            spool={"path": str(tmp_path / "spool.sqlite3")},
            sink={"retry_initial_s": 0.2, "retry_max_s": 1.0, **influx1_sink(influx, uid)})
        gw = Gateway(cfg).start()
        try:
            assert gw.ingest.wait_subscribed(10)
            box = tls_client(broker, pki["ca"])
            box.connect("127.0.0.1", broker.tls_port)
            box.loop_start()
            samples = build("sj-001", 20)
            infos = [box.publish("envbox/v1/sj-001/data", p, qos=1) for p, _t, _e in samples]
            for i in infos:
                i.wait_for_publish(20)
            eventually(lambda: gw.stats()["written"] == 20, 20, what="20 written")
            assert_influx_exact(influx, f"db{uid}", "sj-001", samples)
            box.loop_stop()
            box.disconnect()
        finally:
            gw.stop()
        # the TLS port speaks no plaintext MQTT: a plaintext CONNECT gets no CONNACK
        with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as s:
            s.sendall(bytes.fromhex("101000044d5154540402003c0004") + b"sj-1")
            try:
                answer = s.recv(4)
            except OSError:
                answer = b""
            assert answer[:1] != b"\x20"
        # the plaintext listener is on loopback only
        addr = own_address()
        if addr:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((addr, broker.port)) != 0
            with socket.create_connection((addr, broker.tls_port), timeout=2):
                pass                                  # the TLS one on every interface
    finally:
        broker.stop()


@pytest.mark.parametrize("which", ["wrong_host", "untrusted"])
def test_a_certificate_for_another_host_or_from_another_ca_is_refused(tmp_path, pki, which):
    broker = Mosquitto(tmp_path / "mq", users=PW, tls=pki[which]).start()
    try:
        box = tls_client(broker, pki["ca"])
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            box.connect("127.0.0.1", broker.tls_port)
        assert ("IP address mismatch" in str(e.value) if which == "wrong_host"
                else "unable to get local issuer certificate" in str(e.value))
        # openssl agrees (the reference client), and accepts the right certificate
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.tls_port}",
                            "-CAfile", str(pki["ca"]), "-verify_ip", "127.0.0.1",
                            "-verify_return_error", "-brief"],
                           input=b"", capture_output=True, timeout=20)
        assert r.returncode != 0
    finally:
        broker.stop()
    good = Mosquitto(tmp_path / "mq-good", users=PW, tls=pki["right"]).start()
    try:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{good.tls_port}",
                            "-CAfile", str(pki["ca"]), "-verify_ip", "127.0.0.1",
                            "-verify_return_error", "-brief"],
                           input=b"", capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr.decode()
    finally:
        good.stop()
