"""Identities bound at the broker (issue 11 §3), against real mosquitto 2.0 with the shipped
config/mosquitto.conf and ACL: a client id is its login, so a box cannot take over (or wipe) the
gateway's or another box's persistent session, and both keep what was queued for them; only the
configuration publisher's account writes configuration, not a box and not the gateway."""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envbox.gateway import Gateway
from envbox.gateway import config as gwconfig
from envbox.servers import CONFIG_USER, GATEWAY_USER, MONITOR_USER, Mosquitto, eventually
from test_gateway_e2e import (assert_influx_exact, build, influx, influx1_sink,  # noqa: F401
                              uid)

pytestmark = pytest.mark.slow

PW = {GATEWAY_USER: "gw-pw", CONFIG_USER: "cfg-pw", MONITOR_USER: "mon-pw",
      "sj-001": "pw-1", "sj-002": "pw-2"}


@pytest.fixture
def broker(tmp_path):
    m = Mosquitto(tmp_path / "mq", users=PW).start()
    yield m
    m.stop()


class Client:
    def __init__(self, broker, user, client_id=None, clean=True, password=None):
        self.q: queue.Queue = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or user,
                             protocol=mqtt.MQTTv311, clean_session=clean)
        self.c.username_pw_set(user, password or PW[user])
        got = {}
        self.c.on_connect = lambda c, u, f, rc, p: got.setdefault("c", (f.session_present, rc))
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, bytes(m.payload), m.retain))
        self.subs = []
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subs.append(rcs)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        eventually(lambda: "c" in got, 10, what=f"CONNACK for {user}")
        self.session_present, self.rc = got["c"]

    def subscribe(self, topic, qos=1):
        n = len(self.subs)
        self.c.subscribe(topic, qos=qos)
        eventually(lambda: len(self.subs) > n, 10, what="SUBACK")

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_a_box_cannot_take_over_the_gateways_session(tmp_path, broker, influx, uid):
    """Issue 11: sj-002's login connected with the gateway's client id and a clean session, and
    the 50 samples queued for the gateway were gone. Now the broker names that connection
    sj-002; the gateway's session and its queue stay."""
    cfg = gwconfig.Config().replace(
        mqtt={"port": broker.port, "client_id": "envbox-gateway-1", "username": GATEWAY_USER,
              "password": PW[GATEWAY_USER]},
        spool={"path": str(tmp_path / "spool.sqlite3")},
        sink={"retry_initial_s": 0.2, "retry_max_s": 1.0, **influx1_sink(influx, uid)})
    gw = Gateway(cfg).start()
    assert gw.ingest.wait_subscribed(10)
    gw.stop()                                   # away: the broker queues for its session
    box = Client(broker, "sj-001")
    samples = build("sj-001", 50)
    for p, _t, _e in samples:
        box.publish("envbox/v1/sj-001/data", p)
    # sj-002 tries the gateway's client id (as configured, and as the broker names it) and
    # a clean session
    for cid in ("envbox-gateway-1", GATEWAY_USER):
        thief = Client(broker, "sj-002", client_id=cid, clean=True)
        assert not thief.rc.is_failure and not thief.session_present
        thief.subscribe("envbox/v1/+/data")     # nothing: the ACL does not let it read
        time.sleep(0.3)
        assert thief.q.empty()
        thief.close()
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        assert gw.ingest.session_present is True
        eventually(lambda: gw.stats()["written"] == 50, 20, what="the 50 queued samples")
        assert_influx_exact(influx, f"db{uid}", "sj-001", samples)
    finally:
        gw.stop()
        box.close()


def test_a_box_cannot_take_over_another_boxs_session(broker):
    box = Client(broker, "sj-001", clean=False)
    box.subscribe("envbox/v1/sj-001/config")
    box.close()
    cfg = Client(broker, CONFIG_USER)
    for v in range(3):
        cfg.publish("envbox/v1/sj-001/config", b'{"version": %d}' % v)   # queued, not retained
    thief = Client(broker, "sj-002", client_id="sj-001", clean=True)
    assert not thief.session_present
    thief.close()
    back = Client(broker, "sj-001", clean=False)
    assert back.session_present
    got = [back.q.get(timeout=10)[1] for _ in range(3)]
    assert got == [b'{"version": 0}', b'{"version": 1}', b'{"version": 2}']
    for c in (cfg, back):
        c.close()


def test_only_the_config_account_writes_configuration(broker):
    target = Client(broker, "sj-002")
    target.subscribe("envbox/v1/sj-002/config")
    watcher = Client(broker, MONITOR_USER)
    watcher.subscribe("envbox/v1/+/config")
    other, gw = Client(broker, "sj-001"), Client(broker, GATEWAY_USER)
    # another box, the box itself, the gateway, the read-only account (one connection per
    # login: a second one would take over the first's session, the client id being the login)
    for f in (other, target, gw, watcher):
        for dev in ("sj-001", "sj-002"):
            f.publish(f"envbox/v1/{dev}/config", b'{"version": 99}', retain=True)
    ok = Client(broker, CONFIG_USER)
    ok.publish("envbox/v1/sj-002/config", b'{"version": 4}', retain=True)
    # the broker handles each client's messages in order, and every forged one was
    # acknowledged (and dropped) before the real one was sent
    assert target.q.get(timeout=10)[:2] == ("envbox/v1/sj-002/config", b'{"version": 4}')
    assert watcher.q.get(timeout=10)[:2] == ("envbox/v1/sj-002/config", b'{"version": 4}')
    time.sleep(0.3)
    assert target.q.empty() and watcher.q.empty()
    # and what is retained is the real one only
    watcher.close()
    fresh = Client(broker, MONITOR_USER)
    fresh.subscribe("envbox/v1/+/config")
    assert fresh.q.get(timeout=10) == ("envbox/v1/sj-002/config", b'{"version": 4}', True)
    time.sleep(0.3)
    assert fresh.q.empty()
    for c in (target, ok, fresh, other, gw):
        c.close()


def test_the_shipped_config_binds_client_ids_to_logins():
    from envbox.servers import BROKER_CONF_TEMPLATE
    lines = [ln.split("#")[0].strip() for ln in BROKER_CONF_TEMPLATE.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert "allow_anonymous false" in lines
    # a listener setting in mosquitto 2.0: right under every listener
    listeners = [i for i, ln in enumerate(lines) if ln.startswith("listener ")]
    assert len(listeners) == 2
    for i in listeners:
        assert lines[i + 1] == "use_username_as_clientid true", lines[i]
