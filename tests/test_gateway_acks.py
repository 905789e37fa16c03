"""End-to-end acknowledgements through the real broker with the shipped ACL (issue 9): a box
hears which of its samples the gateway holds, only after the commit, retained for a box that
reconnects; a catch-up batch is acknowledged promptly; two gateway processes sharing the fleet
through $share each acknowledge what they received; a box cannot forge an acknowledgement nor
read another box's."""

from __future__ import annotations

import queue
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envbox.firmware import wire
from envbox.gateway import Gateway
from envbox.gateway import config as gwconfig
from envbox.servers import GATEWAY_USER, Mosquitto, eventually
from test_gateway_batches import batches
from test_gateway_e2e import (build, influx, influx1_sink, start_daemon, uid,  # noqa: F401
                              write_toml)

pytestmark = pytest.mark.slow

GW2 = "envbox-gateway-2"
PW = {GATEWAY_USER: "gw-pw", GW2: "gw2-pw"}


@pytest.fixture
def boxes(uid):
    return [f"b{uid}-{k}" for k in range(3)]


@pytest.fixture
def authbroker(tmp_path, boxes):
    users = dict(PW)
    users.update({b: f"pw-{b}" for b in boxes})
    m = Mosquitto(tmp_path / "mq", users=users, gateways=(GATEWAY_USER, GW2)).start()
    yield m
    m.stop()


def gw_cfg(tmp_path, broker, influx, uid, user=GATEWAY_USER, name="spool", **sections):
    base = {
        "mqtt": {"port": broker.port, "client_id": f"{user}-{uid}", "username": user,
                 "password": PW[user], "reconnect_min_s": 1.0, "reconnect_max_s": 2.0},
        "ack": {"every_samples": 5, "max_delay_s": 0.5, "min_interval_s": 0.2},
        "spool": {"path": str(tmp_path / f"{name}.sqlite3")},
        "sink": {"retry_initial_s": 0.2, "retry_max_s": 1.0, **influx1_sink(influx, uid)},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return gwconfig.Config().replace(**base)


class Box:
    """A box stand-in: logs in as its device id, publishes QoS 1 on its data topic, and
    subscribes to its acknowledgements with QoS 0 as the firmware does."""

    def __init__(self, broker, device, subscribe=None):
        self.device = device
        self.acks: queue.Queue = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                             protocol=mqtt.MQTTv311)
        self.c.username_pw_set(device, f"pw-{device}")
        self.c.max_inflight_messages_set(100)
        self.c.on_message = lambda c, u, m: self.acks.put(
            (m.topic, bytes(m.payload), bool(m.retain), time.monotonic()))
        subs = []
        self.c.on_subscribe = lambda c, u, mid, rcs, p: subs.append(rcs)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        self.c.subscribe(subscribe or f"envbox/v1/{device}/ack/+", qos=0)
        eventually(lambda: subs, 10, what="SUBACK")
        self.infos = []

    def send(self, payload, topic=None):
        self.infos.append(self.c.publish(topic or f"envbox/v1/{self.device}/data", payload,
                                         qos=1))

    def wait(self):
        for i in self.infos:
            i.wait_for_publish(20)

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.acks.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def seqs_of(ranges):
    return {s for lo, hi in ranges for s in range(lo, hi)}


def spool_seqs(path, device):
    """The seqs of `device` the spool holds: its seq ranges (the newest max_seq_ranges) and
    the history of stored samples (older ranges are folded into a count)."""
    c = sqlite3.connect(path, timeout=10)
    try:
        held = seqs_of((a, b + 1) for a, b in c.execute(
            "SELECT start_seq, end_seq FROM seq_ranges WHERE device=?", (device,)))
        held.update(s for (s,) in c.execute(
            "SELECT seq FROM history JOIN device_ids ON history.dev = device_ids.id"
            " WHERE device_ids.device=?", (device,)))
        return held
    finally:
        c.close()


def test_a_box_hears_what_the_gateway_committed_and_gets_it_again_on_reconnect(
        tmp_path, authbroker, influx, uid, boxes):
    cfg = gw_cfg(tmp_path, authbroker, influx, uid)
    gw = Gateway(cfg).start()
    dev = boxes[0]
    try:
        assert gw.ingest.wait_subscribed(10)
        box = Box(authbroker, dev)
        samples = build(dev, 12)
        heard = set()
        for p, _t, _e in samples:
            box.send(p)
        box.wait()

        def covered():
            for topic, payload, _retain, _at in box.drain():
                assert topic == f"envbox/v1/{dev}/ack/{GATEWAY_USER}"
                got = seqs_of(wire.decode_ack(payload))
                # acknowledged only once committed: the spool already holds every seq named
                assert got <= spool_seqs(cfg.spool.path, dev)
                heard.update(got)
            return heard == set(range(12))
        eventually(covered, 15, what="every seq acknowledged")
        box.close()
        # a box that comes back gets the latest acknowledgement, retained, on subscribing
        again = Box(authbroker, dev)
        topic, payload, retain, _ = again.acks.get(timeout=10)
        assert retain and wire.decode_ack(payload) == [(0, 12)]
        again.close()
        st = gw.stats()
        assert st["acks_sent"] >= 1 and st["ack_publish_failed"] == 0
        # 12 samples at every_samples 5: the coalescing sent few messages, not one per sample
        assert st["acks_sent"] <= 6
    finally:
        gw.stop()


def test_a_catch_up_batch_is_acknowledged_promptly_a_live_sample_waits(
        tmp_path, authbroker, influx, uid, boxes):
    cfg = gw_cfg(tmp_path, authbroker, influx, uid,
                 ack={"every_samples": 1000, "max_delay_s": 3600.0, "min_interval_s": 0.2})
    gw = Gateway(cfg).start()
    live_dev, batch_dev = boxes[0], boxes[1]
    try:
        assert gw.ingest.wait_subscribed(10)
        live, catchup = Box(authbroker, live_dev), Box(authbroker, batch_dev)
        live.send(build(live_dev, 1, seq0=500)[0][0])
        live.wait()
        for b in batches(batch_dev, build(batch_dev, 100)):
            catchup.send(b)
        catchup.wait()
        got = set()

        def all_acked():
            for _t, payload, _r, _a in catchup.drain():
                got.update(seqs_of(wire.decode_ack(payload)))
            return got == set(range(100))
        eventually(all_acked, 10, what="the batch acknowledged")
        eventually(lambda: gw.stats()["spooled"] == 101, 10)
        # the live sample is committed but waits for max_delay_s (an hour) or 1000 samples
        assert live.drain() == []
        live.close()
        catchup.close()
    finally:
        gw.stop()    # flushes what is pending
    again = Box(authbroker, live_dev)
    _t, payload, retain, _ = again.acks.get(timeout=10)
    assert retain and wire.decode_ack(payload) == [(500, 501)]
    again.close()


def test_two_gateway_processes_each_acknowledge_what_they_received(
        tmp_path, authbroker, influx, uid, boxes):
    spools = {}
    procs = []
    log = open(tmp_path / "gw.log", "ab")
    try:
        for user in (GATEWAY_USER, GW2):
            cfg = gw_cfg(tmp_path, authbroker, influx, uid, user=user, name=user,
                         mqtt={"shared_group": f"g{uid}"}, http={"listen": ""})
            spools[user] = cfg.spool.path
            procs.append(start_daemon(write_toml(tmp_path / f"{user}.toml", cfg), log))
        for path in spools.values():
            eventually(lambda: _connects(path), 20, what="daemon subscribed")
        n = 150
        bxs = [Box(authbroker, d) for d in boxes]
        for k in range(n):
            for b in bxs:
                b.send(build(b.device, 1, seq0=k)[0][0])
        for b in bxs:
            b.wait()
        heard = {(b.device, gw): set() for b in bxs for gw in spools}

        def all_heard():
            for b in bxs:
                for topic, payload, _r, _a in b.drain():
                    gw = topic.rsplit("/", 1)[1]
                    heard[(b.device, gw)].update(seqs_of(wire.decode_ack(payload)))
            return all(set().union(*(heard[(b.device, gw)] for gw in spools)) == set(range(n))
                       for b in bxs)
        eventually(all_heard, 30, what="every seq acknowledged by one gateway or the other")
        for b in bxs:
            for gw, path in spools.items():
                held = spool_seqs(path, b.device)
                assert heard[(b.device, gw)] <= held, f"{gw} acknowledged what it never got"
            # $share gave each message to one gateway: both did some of the work
            assert all(heard[(b.device, gw)] for gw in spools)
            b.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        log.close()


def _connects(path):
    try:
        c = sqlite3.connect(path, timeout=5)
        try:
            return c.execute("SELECT value FROM counters WHERE name='mqtt_connects'").fetchone()
        finally:
            c.close()
    except sqlite3.Error:
        return None


def test_a_box_cannot_forge_an_acknowledgement_nor_read_another_boxs(authbroker, boxes):
    me, other = boxes[0], boxes[1]
    mine = Box(authbroker, me)
    theirs = Box(authbroker, other)
    spy = Box(authbroker, boxes[2], subscribe=f"envbox/v1/{me}/ack/+")
    forged = wire.encode_ack([(0, 1_000_000)])
    for t in (f"envbox/v1/{me}/ack/{GATEWAY_USER}", f"envbox/v1/{me}/ack/{me}",
              f"envbox/v1/{other}/ack/{GATEWAY_USER}", f"envbox/v1/{other}/ack/{me}"):
        mine.c.publish(t, forged, qos=1, retain=True).wait_for_publish(10)
    # the real gateway account's acknowledgements come through, after the forged ones
    gw = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-probe", protocol=mqtt.MQTTv311)
    gw.username_pw_set(GATEWAY_USER, PW[GATEWAY_USER])
    gw.connect("127.0.0.1", authbroker.port)
    gw.loop_start()
    real = wire.encode_ack([(5, 6)])
    for d in (me, other):
        gw.publish(f"envbox/v1/{d}/ack/{GATEWAY_USER}", real, qos=1).wait_for_publish(10)
    # the broker handles one client's messages in order and the forged ones were acknowledged
    # (and dropped) before the real ones were sent: the first message each box gets is the real
    assert mine.acks.get(timeout=10)[:2] == (f"envbox/v1/{me}/ack/{GATEWAY_USER}", real)
    assert theirs.acks.get(timeout=10)[:2] == (f"envbox/v1/{other}/ack/{GATEWAY_USER}", real)
    # nothing retained was stored by the forger: a fresh subscriber gets nothing
    fresh = Box(authbroker, other)
    time.sleep(0.5)
    assert fresh.drain() == [] and mine.drain() == [] and theirs.drain() == []
    # and a box reads no other box's acknowledgements
    assert spy.drain() == []
    # nor may a gateway publish under another gateway's name
    gw.publish(f"envbox/v1/{me}/ack/{GW2}", forged, qos=1).wait_for_publish(10)
    gw.publish(f"envbox/v1/{me}/ack/{GATEWAY_USER}", real, qos=1).wait_for_publish(10)
    assert mine.acks.get(timeout=10)[:2] == (f"envbox/v1/{me}/ack/{GATEWAY_USER}", real)
    for c in (mine, theirs, spy, fresh):
        c.close()
    gw.loop_stop()
    gw.disconnect()
