"""The gateway's parts on their own, each with what it talks to injected (issue 13 §5): ingest
with a paho client given to it, the writer with a sink given to it, against real mosquitto,
a real SQLite spool and real InfluxDB 1.6.7. The injected client and sink are the real ones,
wrapped to check the guarantee at the moment it matters: a PUBACK leaves only for a message
whose sample is committed in the spool; a write leaves the rows in the spool until the server
answered 2xx."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from paho.mqtt.enums import CallbackAPIVersion
import paho.mqtt.client as mqtt

from envbox.firmware import wire
from envbox.gateway.ingest import CountingClient, Ingest
from envbox.gateway.metrics import Counters
from envbox.gateway.sinks import Influx1Sink
from envbox.gateway.spool import Accepted, Spool
from envbox.gateway.writer import Writer
from envbox.servers import eventually
from test_gateway_e2e import (Publisher, assert_influx_exact, broker, build, influx,  # noqa: F401
                              influx1_sink, make_cfg, topic, uid)

pytestmark = pytest.mark.slow


def committed(path: str, device: str, seq: int) -> bool:
    """Whether (device, seq) is in the spool's samples, read through a connection of our own
    (it sees committed transactions only)."""
    c = sqlite3.connect(path, timeout=10)
    try:
        return c.execute("SELECT 1 FROM samples WHERE device=? AND seq=?",
                         (device, seq)).fetchone() is not None
    finally:
        c.close()


class CheckingClient(CountingClient):
    """paho's client (the plain-read CountingClient, the fallback make_client picks when a paho
    release renames what ReadBufferedClient overrides), noting each message's sample as paho
    hands it over and, for every PUBACK it sends, whether that sample was committed by then."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_of: dict[int, tuple[str, int]] = {}     # packet id -> (device, seq)
        self.pubacks: list[tuple[int, bool]] = []           # (packet id, committed then)
        self.lock = threading.Lock()

    def _handle_on_message(self, message):
        d = wire.decode(message.payload)
        with self.lock:
            self.sample_of[message.mid] = (d["device"], d["seq"])
        super()._handle_on_message(message)

    def _send_puback(self, mid):
        with self.lock:
            dev, seq = self.sample_of[mid]
        self.pubacks.append((mid, committed(self.spool_path, dev, seq)))
        return super()._send_puback(mid)


def test_ingest_with_an_injected_client_acks_only_what_it_committed(tmp_path, broker, influx,
                                                                     uid):
    assert hasattr(mqtt.Client, "_send_puback") and hasattr(mqtt.Client, "_handle_on_message")
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   ingest={"commit_max_messages": 7})
    # built with automatic acknowledgements on purpose: Ingest must turn them off, or paho
    # would send each PUBACK as the message arrives, before any commit
    client = CheckingClient(CallbackAPIVersion.VERSION2, client_id=cfg.mqtt.client_id,
                            protocol=mqtt.MQTTv311, clean_session=False, manual_ack=False)
    client.spool_path = cfg.spool.path
    spool = Spool(cfg.spool.path)
    counters = Counters()
    ing = Ingest(cfg, spool, counters, client=client)
    assert ing.client is client
    ing.start()
    pub = None
    try:
        assert ing.wait_subscribed(10)
        dev = f"s{uid}"
        samples = build(dev, 200)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait(60)
        eventually(lambda: counters.snapshot().get("acked", 0) == len(samples), 30,
                   what="every message acknowledged")
    finally:
        if pub:
            pub.close()
        ing.stop()
    assert len(client.pubacks) == len(samples)
    early = [mid for mid, ok in client.pubacks if not ok]
    assert not early, f"{len(early)} PUBACKs left before their sample was committed"
    assert sorted(seq for _d, seq in client.sample_of.values()) == list(range(len(samples)))
    assert spool.count_rows() == len(samples)
    c = counters.snapshot()
    assert c["spooled"] == len(samples) and c["commits"] >= len(samples) // 7
    assert spool.had_mqtt_session()      # remembered through the spool, not by ingest's SQL


class CheckingSink:
    """The real influx1 sink, checking at each write that its rows are still in the spool (a
    row leaves only after the 2xx) and noting what was written."""

    def __init__(self, inner: Influx1Sink, spool_path: str):
        self.inner = inner
        self.spool_path = spool_path
        self.writes: list[int] = []
        self.missing = 0
        self.closed = False

    def write(self, lines):
        c = sqlite3.connect(self.spool_path, timeout=10)
        try:
            for ln in lines:
                seq = int(ln.split("seq=", 1)[1].split(",", 1)[0].split(" ", 1)[0])
                if c.execute("SELECT 1 FROM samples WHERE seq=?", (seq,)).fetchone() is None:
                    self.missing += 1
        finally:
            c.close()
        self.inner.write(lines)
        self.writes.append(len(lines))

    def close(self):
        self.closed = True
        self.inner.close()


def test_writer_with_an_injected_sink_deletes_rows_only_after_the_write(tmp_path, broker,
                                                                       influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), sink={"batch_size": 64})
    spool = Spool(cfg.spool.path)
    dev = f"w{uid}"
    samples = build(dev, 300)
    spool.ingest([Accepted(dev, wire.decode(p)["seq"], t, p, time.time())
                  for p, t, _e in samples])
    sink = CheckingSink(Influx1Sink(cfg.sink), cfg.spool.path)
    counters = Counters()
    w = Writer(cfg, spool, counters, sink=sink)
    w.start()
    try:
        eventually(lambda: counters.snapshot().get("written", 0) == len(samples), 30,
                   what="every row written")
    finally:
        w.stop()
    assert sink.closed
    assert sink.missing == 0
    assert sum(sink.writes) == len(samples) and max(sink.writes) <= 64
    assert spool.count_rows() == 0
    assert_influx_exact(influx, cfg.sink.database, dev, samples)
