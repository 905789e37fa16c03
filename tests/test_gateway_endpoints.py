"""The gateway's own endpoints and links cannot be turned against it (issue 11 §6): /metrics and
/healthz only on loopback unless asked, with time-outs and a bound on connections; the InfluxDB
sink verifies an https server against [sink] ca_file (a real InfluxDB 1.6.7 serving https with a
certificate from a CA made here), and credentials over plain http to another host are warned
about."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

import pytest

from envbox.gateway import Gateway
from envbox.gateway import config as gwconfig
from envbox.gateway.config import ConfigError
from envbox.servers import InfluxDB1, eventually, free_port
from test_broker_tls import make_ca, make_cert
from test_gateway_e2e import (Publisher, assert_influx_exact, broker, build, make_cfg,  # noqa: F401
                              topic, uid)


@pytest.mark.parametrize("listen", ["0.0.0.0:9108", "192.0.2.7:9108", "[::]:9108"])
def test_metrics_refuse_a_non_loopback_address_unless_allowed(listen):
    with pytest.raises(ConfigError, match="not a loopback address"):
        gwconfig.Config().replace(http={"listen": listen})
    gwconfig.Config().replace(http={"listen": listen, "allow_remote": True})
    for ok in ("127.0.0.1:9108", ":9108", "localhost:9108", "[::1]:9108"):
        gwconfig.Config().replace(http={"listen": ok})
    assert gwconfig.http_address(gwconfig.Config().replace(http={"listen": ":9108"})) == \
        ("127.0.0.1", 9108)


@pytest.mark.slow
def test_metrics_drop_silent_clients_and_bound_connections(tmp_path, broker, uid):
    port = free_port()
    cfg = make_cfg(tmp_path, broker, uid, {"url": "http://127.0.0.1:9"},
                   http={"listen": f":{port}", "timeout_s": 1.0, "max_connections": 4})
    gw = Gateway(cfg).start()
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        t0 = time.monotonic()
        for s in idle:                      # every one is closed: at once or after timeout_s
            s.settimeout(10)
            assert s.recv(1) == b""
            s.close()
        assert time.monotonic() - t0 < 8
        body = eventually(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read(), 10)
        assert b"envbox_gateway_received_total" in body
    finally:
        gw.stop()


def test_credentials_over_plain_http_to_another_host_are_warned_about():
    warn = gwconfig.warnings
    remote = gwconfig.Config().replace(sink={"url": "http://influx.example:8086",
                                             "username": "gw", "password": "s3cret"})
    assert any("over plain http" in w for w in warn(remote))
    assert "s3cret" not in " ".join(warn(remote))
    for quiet in ({"url": "http://127.0.0.1:8086", "username": "gw", "password": "x"},
                  {"url": "https://influx.example:8086", "username": "gw", "password": "x"},
                  {"url": "http://influx.example:8086"}):
        assert not warn(gwconfig.Config().replace(sink=quiet))


@pytest.mark.slow
def test_https_influxdb_verified_against_the_ca_file(tmp_path, broker, uid, caplog):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki, "db-ca")
    cert = make_cert(pki, "db-ca", "influx", "IP:127.0.0.1")
    ix = InfluxDB1(tmp_path / "influxdb", tls=cert).start()
    try:
        sink = {"url": ix.url, "database": f"db{uid}", "retry_initial_s": 0.1,
                "retry_max_s": 0.3}
        assert ix.url.startswith("https://")
        # without the CA the server's certificate is not trusted: retried, nothing written
        gw = Gateway(make_cfg(tmp_path, broker, uid, sink)).start()
        try:
            assert gw.ingest.wait_subscribed(10)
            pub = Publisher(broker, uid)
            dev = f"h{uid}"
            samples = build(dev, 10)
            for p, _t, _e in samples:
                pub.send(topic(uid, dev), p)
            pub.wait()
            eventually(lambda: gw.stats()["retried"] >= 2, 20)
            assert gw.stats()["written"] == 0
            # the writer process publishes its last error every WRITER_STATE_PERIOD_S, after
            # the counters (which are shared at once)
            eventually(lambda: "CERTIFICATE_VERIFY_FAILED" in (gw.writer.last_error or ""), 20)
        finally:
            gw.stop()
        gw = Gateway(make_cfg(tmp_path, broker, uid, dict(sink, ca_file=str(ca)))).start()
        try:
            eventually(lambda: gw.stats()["written"] == 10, 20)
            assert_influx_exact(ix, f"db{uid}", dev, samples)
            pub.close()
        finally:
            gw.stop()
    finally:
        ix.stop()
