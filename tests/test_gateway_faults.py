"""Gateway under faults: Retry-After from a throttling proxy in front of a real InfluxDB, the
systemd notify protocol, dead-letter requeue from the CLI, and SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from envbox.gateway import Gateway
from test_gateway_e2e import (Publisher, assert_influx_exact, broker, build,  # noqa: F401
                              daemon_subscribed, influx, influx1_sink, influx_rows, make_cfg,
                              spool_written, start_daemon, topic, uid, write_toml)
from envbox.servers import eventually, free_port

pytestmark = pytest.mark.slow


class ThrottlingProxy:
    """Answers the first `refuse` POSTs to /write with `status` + Retry-After, then forwards
    everything to the real server. This is the one place a stand-in is needed: InfluxDB 1.6.7
    never sends 429/503 with Retry-After, but an InfluxDB Cloud or a reverse proxy does."""

    def __init__(self, upstream: str, refuse: int, status: int, retry_after: str):
        self.times: list[float] = []
        proxy = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/write"):
                    proxy.times.append(time.monotonic())
                    if len(proxy.times) <= refuse:
                        msg = b'{"error":"slow down"}'
                        self.send_response(status)
                        self.send_header("Retry-After", retry_after)
                        self.send_header("Content-Length", str(len(msg)))
                        self.end_headers()
                        self.wfile.write(msg)
                        return
                req = urllib.request.Request(upstream + self.path, data=body, method="POST",
                                             headers={"Content-Type": self.headers["Content-Type"]})
                try:
                    with urllib.request.urlopen(req) as r:
                        code, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    code, data = e.code, e.read()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(tmp_path, broker, influx, uid, status):
    proxy = ThrottlingProxy(influx.url, refuse=2, status=status, retry_after="1")
    sink = influx1_sink(influx, uid) | {"url": proxy.url}
    # a back-off of at most 10 ms of its own: any longer wait comes from Retry-After
    cfg = make_cfg(tmp_path, broker, uid, sink, sink={"retry_initial_s": 0.005,
                                                      "retry_max_s": 0.01})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        dev = f"r{uid}"
        samples = build(dev, 20)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 20, 30)
        t = proxy.times
        assert len(t) >= 3
        assert t[1] - t[0] >= 1.0 and t[2] - t[1] >= 1.0
        assert gw.stats()["retried"] == 2 and gw.stats()["dead_lettered"] == 0
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        pub.close()
    finally:
        gw.stop()
        proxy.close()


def test_systemd_notify_ready_watchdog_stopping(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    conf = write_toml(tmp_path / "gw.toml", cfg)
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="400000")
    log = open(tmp_path / "gw.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "envbox.gateway.cli", "run", "--config",
                             str(conf)], stdout=log, stderr=subprocess.STDOUT, env=env)
    # WATCHDOG_PID unset: the watchdog applies to the main process, which is us
    got = []
    try:
        def recv_until(word):
            while True:
                msg = srv.recv(4096).decode()
                got.append(msg)
                if word in msg:
                    return msg
        assert "READY=1" in recv_until("READY=1")
        recv_until("WATCHDOG=1")
        recv_until("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        recv_until("STOPPING=1")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.close()
        log.close()


def test_dead_letters_list_and_requeue_cli(tmp_path, broker, influx, uid):
    # A box whose clock ran 3 days ahead: refused with max_future_s = 1 day. The operator
    # decides to accept them (raises the limit) and requeues them.
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    dev = f"q{uid}"
    samples = build(dev, 5, t0=int(time.time()) + 3 * 86400)
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["dead_lettered"] == 5)
        pub.close()
    finally:
        gw.stop()
    conf = write_toml(tmp_path / "gw.toml", cfg)
    cli = [sys.executable, "-m", "envbox.gateway.cli", "--config", str(conf), "dead-letters"]
    out = subprocess.run(cli + ["list", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    dl = json.loads(out.stdout)
    assert len(dl) == 5 and all("ahead of the gateway clock" in d["reason"] for d in dl)
    assert bytes.fromhex(dl[0]["payload"]) == samples[0][0]
    out = subprocess.run(cli + ["requeue", "--all"], capture_output=True, text=True, timeout=30)
    assert "requeued 0; kept 5" in out.stdout          # still in the future for this config
    env = dict(os.environ, ENVBOX_GW_INGEST_MAX_FUTURE_S=str(5 * 86400))
    out = subprocess.run(cli + ["requeue", str(dl[0]["id"]), str(dl[1]["id"])],
                         capture_output=True, text=True, timeout=30, env=env)
    assert "requeued 2; kept 0" in out.stdout, out.stdout + out.stderr
    gw = Gateway(cfg).start()
    try:
        eventually(lambda: gw.stats()["written"] == 2, 20)
        assert_influx_exact(influx, f"db{uid}", dev, samples[:2])
        assert gw.spool.dead_letter_count() == 3
    finally:
        gw.stop()


def answers(url):
    try:
        urllib.request.urlopen(url, timeout=1).read()
    except urllib.error.HTTPError:
        pass               # 503 is an answer too
    except OSError:
        return False
    return True


@pytest.mark.parametrize("round_", range(20))
def test_sigkill_at_random_points(tmp_path, broker, influx, uid, round_):
    """Kill the daemon (mostly SIGKILL, sometimes a clean SIGTERM) at random moments of a
    2,000-sample stream (seeded per round, so a failure names a reproducible schedule), restart
    it each time, expect every sample once."""
    rnd = random.Random(round_)
    http_port = free_port()
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   sink={"batch_size": rnd.choice([50, 500, 5000]),
                         "writer_process": rnd.choice([False, True])},
                   ingest={"commit_max_messages": rnd.choice([1, 20, 500])},
                   http={"listen": f"127.0.0.1:{http_port}"})
    conf = write_toml(tmp_path / "gw.toml", cfg)
    dev = f"z{uid}"
    n = 2000
    samples = build(dev, n)
    log = open(tmp_path / "gw.log", "ab")
    proc = start_daemon(conf, log)
    pub = Publisher(broker, uid)
    try:
        daemon_subscribed(cfg.spool.path, proc, tmp_path / "gw.log")

        def feed():
            for i, (p, _t, _e) in enumerate(samples):
                pub.send(topic(uid, dev), p)
                if i % 50 == 49:
                    time.sleep(0.03)
        feeder = threading.Thread(target=feed)
        feeder.start()
        kills = 0
        for _ in range(rnd.randint(1, 3)):
            time.sleep(rnd.uniform(0.0, 0.6))
            sig = rnd.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM])
            if sig == signal.SIGTERM:
                # a clean stop is only promised once the daemon runs (it serves /healthz);
                # before its first line of Python, SIGTERM's default action applies
                eventually(lambda: answers(f"http://127.0.0.1:{http_port}/healthz"), 20)
            proc.send_signal(sig)
            rc = proc.wait(30)
            assert rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            kills += 1
            time.sleep(rnd.uniform(0.0, 0.3))
            proc = start_daemon(conf, log)
        feeder.join()
        pub.wait()
        eventually(lambda: len(influx_rows(influx, f"db{uid}", dev)) == n, 60,
                   what=f"all {n} in InfluxDB after {kills} kills")
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        eventually(lambda: spool_written(cfg.spool.path) >= n, 30)
        c = sqlite3.connect(cfg.spool.path)
        assert c.execute("SELECT start_seq, end_seq FROM seq_ranges").fetchall() == [(0, n - 1)]
        assert c.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()
        log.close()


# --- hostile payloads through the real broker -------------------------------------------------

@pytest.fixture(scope="module")
def hostile_rig(tmp_path_factory):
    from envbox.servers import InfluxDB1, Mosquitto
    d = tmp_path_factory.mktemp("hostile")
    mq = Mosquitto(d / "mosquitto").start()
    ix = InfluxDB1(d / "influxdb").start()
    u = "hostile"
    cfg = make_cfg(d, mq, u, influx1_sink(ix, u))
    gw = Gateway(cfg).start()
    assert gw.ingest.wait_subscribed(10)
    pub = Publisher(mq, u)
    yield gw, pub, ix
    pub.close()
    gw.stop()
    ix.stop()
    mq.stop()


_sentinel_seq = iter(range(10**6))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Topic levels: any text but / + # and control characters (mosquitto disconnects a publisher
# that uses those in a topic, so they never reach a subscriber).
@given(st.lists(st.tuples(st.text(st.characters(blacklist_characters="/+#",
                                                blacklist_categories=("Cs", "Cc")),
                                  min_size=1, max_size=12),
                          st.binary(max_size=300)), min_size=1, max_size=25))
def test_hostile_payloads_never_stop_the_gateway(hostile_rig, msgs):
    gw, pub, ix = hostile_rig
    before = gw.stats()
    for device, data in msgs:
        pub.send(f"thostile/v1/{device}/data", data)
    # a good sample after them: once it is written, everything before it was handled
    seq = next(_sentinel_seq)
    [(p, t, _e)] = build("sentinel", 1, seq0=seq)
    pub.send(topic("hostile", "sentinel"), p)
    pub.wait()
    eventually(lambda: any(r["time"] == t for r in influx_rows(ix, "dbhostile", "sentinel")), 20,
               what="sentinel written")
    after = gw.stats()
    delta = {k: after[k] - before[k] for k in ("received", "spooled", "duplicates", "malformed",
                                               "rejected", "acked")}
    n = len(msgs) + 1
    assert delta["received"] == n
    assert delta["acked"] == n
    # every message is accounted for: stored, recognised as a copy, or dead-lettered
    assert delta["spooled"] + delta["duplicates"] + delta["malformed"] + delta["rejected"] == n
    assert after["callback_errors"] == 0 and after["spool_errors"] == 0
    assert gw.alive()


def test_broker_credentials_and_no_secret_in_logs(tmp_path, influx, uid, caplog):
    from envbox.servers import Mosquitto
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "right-pass-42"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "box", "box-pass"], check=True)
    mq = Mosquitto(tmp_path / "mq", extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    mq.start()
    try:
        bad = make_cfg(tmp_path, mq, uid, influx1_sink(influx, uid),
                       mqtt={"username": "gw", "password": "wrong-pass-13"})
        caplog.set_level("DEBUG")
        gw = Gateway(bad).start()
        try:
            assert not gw.ingest.wait_subscribed(3)
            assert not gw.health()["ok"]
        finally:
            gw.stop()
        good = make_cfg(tmp_path, mq, uid, influx1_sink(influx, uid),
                        mqtt={"username": "gw", "password": "right-pass-42"})
        gw = Gateway(good).start()
        try:
            assert gw.ingest.wait_subscribed(10)
            pub = Publisher.__new__(Publisher)
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
            pub.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"box-{uid}",
                                protocol=mqtt.MQTTv5)
            pub.c.username_pw_set("box", "box-pass")
            pub.c.connect("127.0.0.1", mq.port)
            pub.c.loop_start()
            pub.infos = []
            dev = f"u{uid}"
            samples = build(dev, 10)
            for p, _t, _e in samples:
                pub.send(topic(uid, dev), p)
            pub.wait()
            eventually(lambda: gw.stats()["written"] == 10)
            assert_influx_exact(influx, f"db{uid}", dev, samples)
            pub.close()
        finally:
            gw.stop()
        text = caplog.text
        assert "gateway starting" in text
        assert "right-pass-42" not in text and "wrong-pass-13" not in text
    finally:
        mq.stop()


def make_tls_files(d):
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=envbox test CA",
         "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
         str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"),
         "-out", str(d / "server.crt"))
    return d / "ca.crt", d / "server.crt", d / "server.key"


def test_tls_to_the_broker(tmp_path, influx, uid):
    from envbox.servers import Mosquitto
    ca, crt, key = make_tls_files(tmp_path)
    # these lines follow the `listener` line, so they make that listener TLS-only
    mq = Mosquitto(tmp_path / "mq", extra_conf=f"cafile {ca}\ncertfile {crt}\nkeyfile {key}\n")
    mq.start()
    try:
        cfg = make_cfg(tmp_path, mq, uid, influx1_sink(influx, uid),
                       mqtt={"tls": True, "tls_ca_file": str(ca)})
        gw = Gateway(cfg).start()
        try:
            assert gw.ingest.wait_subscribed(10)
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
            pub = Publisher.__new__(Publisher)
            pub.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"box-{uid}",
                                protocol=mqtt.MQTTv5)
            pub.c.tls_set(ca_certs=str(ca))
            pub.c.connect("127.0.0.1", mq.port)
            pub.c.loop_start()
            pub.infos = []
            dev = f"x{uid}"
            samples = build(dev, 20)
            for p, _t, _e in samples:
                pub.send(topic(uid, dev), p)
            pub.wait()
            eventually(lambda: gw.stats()["written"] == 20)
            assert_influx_exact(influx, f"db{uid}", dev, samples)
            pub.close()
        finally:
            gw.stop()
        # without TLS the same listener refuses us
        plain = make_cfg(tmp_path, mq, uid + "p", influx1_sink(influx, uid))
        gw = Gateway(plain).start()
        try:
            assert not gw.ingest.wait_subscribed(3)
        finally:
            gw.stop()
    finally:
        mq.stop()
