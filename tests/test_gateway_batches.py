"""KIND_BATCH messages (a box's catch-up after an outage) through real mosquitto, the gateway and
InfluxDB 1.6.7: every sample of every batch stored once with its own time and values, mixed with
live single-sample messages from the same boxes; a redelivered batch is recognised as
duplicates (and InfluxDB keeps one point per sample); a batch with a bad sample dead-letters
only that sample; a batch that does not decode is dead-lettered whole.

Expected values come from test_gateway_e2e.build (computed from the samples built there), and
batches are built with the firmware's own wire.BatchEncoder from the same samples.
"""

from __future__ import annotations

import time

import pytest

from envbox.firmware import wire
from envbox.gateway import Gateway
from envbox.servers import eventually
from test_gateway_e2e import (Publisher, assert_influx_exact, broker, build,  # noqa: F401
                              influx, influx1_sink, influx_rows, make_cfg, topic, uid)

pytestmark = pytest.mark.slow

EPOCH_2020 = 1577836800


def batches(device: str, samples, max_samples: int = 60, buf_bytes: int = 2048) -> list[bytes]:
    """The samples as the firmware's catch-up sends them: KIND_BATCH messages of up to
    max_samples samples in a buf_bytes buffer (firmware defaults: 60, 2 KiB)."""
    out = []
    buf = bytearray(buf_bytes)
    k = 0
    while k < len(samples):
        e = wire.BatchEncoder(buf, 10)
        s = wire.Sample(device.encode())
        p = samples[k][0]
        wire.decode_into(s, p, len(p))
        e.begin(s)
        while k < len(samples) and e.count < max_samples:
            p = samples[k][0]
            wire.decode_into(s, p, len(p))
            if not e.add(s):
                break
            k += 1
        out.append(bytes(buf[:e.finish()]))
    return out


def test_batches_and_live_from_several_boxes_arrive_exactly_once(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        boxes = {f"b{k}{uid}": build(f"b{k}{uid}", 300 + 70 * k, seq0=17 * k) for k in range(3)}
        # Each box: its newest samples live (singly), its backlog in batches, interleaved over
        # the boxes, as after a depot's broker came back.
        msgs = []
        n_batches = 0
        for dev, samples in boxes.items():
            backlog, live = samples[:-40], samples[-40:]
            bs = batches(dev, backlog)
            n_batches += len(bs)
            assert len(bs) > 3 and all(b[0] == wire.KIND_BATCH for b in bs)
            mine = [(dev, b) for b in bs] + [(dev, p) for p, _t, _e in live]
            mine.sort(key=lambda m: hash(m[1]))     # batches and live singles mixed
            msgs.append(mine)
        while any(msgs):
            for mine in msgs:
                if mine:
                    dev, p = mine.pop()
                    pub.send(topic(uid, dev), p)
        pub.wait()
        total = sum(len(s) for s in boxes.values())
        n_msgs = n_batches + 3 * 40
        eventually(lambda: gw.stats()["written"] == total, 60, what=f"{total} written")
        for dev, samples in boxes.items():
            assert_influx_exact(influx, f"db{uid}", dev, samples)
        st = gw.stats()
        assert (st["received"], st["received_batches"], st["received_samples"]) == \
            (n_msgs, n_batches, total)
        assert (st["spooled"], st["duplicates"], st["acked"], st["dead_lettered"]) == \
            (total, 0, n_msgs, 0)
        status = {d["device"]: d for d in gw.spool.device_status()}
        for k, (dev, samples) in enumerate(boxes.items()):
            assert (status[dev]["received"], status[dev]["missing"]) == (len(samples), 0)
            assert status[dev]["first_seq"] == 17 * k
        pub.close()
    finally:
        gw.stop()


def test_redelivered_batch_is_recognised_and_not_duplicated(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        dev = f"r{uid}"
        samples = build(dev, 200)
        bs = batches(dev, samples)
        for b in bs:
            pub.send(topic(uid, dev), b)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 200, 30, what="200 written")
        # The box lost its connection before the PUBACKs: the same batch again, and one sample
        # of it once more singly (the firmware may send a sample both ways).
        pub.send(topic(uid, dev), bs[1])
        pub.send(topic(uid, dev), samples[0][0])
        pub.wait()
        n_again = len(wire.decode_many(bs[1])) + 1
        eventually(lambda: gw.stats()["duplicates"] == n_again, 30, what="duplicates counted")
        eventually(lambda: gw.spool.depth == 0, 30, what="spool empty")
        st = gw.stats()
        # identical copies of stored samples: recognised by the spool's history, not written
        # again although those rows had left the spool
        assert st["spooled"] == 200 and st["conflicts"] == 0 and st["dead_lettered"] == 0
        assert_influx_exact(influx, f"db{uid}", dev, samples)      # one point per sample
        d = {x["device"]: x for x in gw.spool.device_status()}[dev]
        assert (d["received"], d["duplicates"], d["missing"]) == (200, n_again, 0)

        # Redelivered while the first copy still waits in the spool (InfluxDB away): the spool's
        # unique key drops the copy, so it is not even written twice.
        influx.stop()
        more = build(dev, 100, seq0=200)
        mb = batches(dev, more)
        for b in mb + mb[:1]:
            pub.send(topic(uid, dev), b)
        pub.wait()
        n_dup = len(wire.decode_many(mb[0]))
        eventually(lambda: gw.stats()["duplicates"] == n_again + n_dup, 30)
        assert gw.spool.depth == 100
        influx.start()
        eventually(lambda: gw.stats()["written"] == 200 + 100, 60)
        assert_influx_exact(influx, f"db{uid}", dev, samples + more)
        pub.close()
    finally:
        gw.stop()


def test_bad_samples_in_a_batch_are_dead_lettered_the_rest_kept(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        dev = f"x{uid}"
        now = int(time.time())
        # 30 samples, 10 s apart, of which the last 5 are stamped more than max_future_s
        # (1 day) ahead: a box whose clock jumped mid-outage.
        good = build(dev, 25, t0=now - 3600)
        ahead = build(dev, 5, seq0=25, t0=now + 2 * 86400)
        b = batches(dev, good + ahead)
        assert len(b) == 1
        pub.send(topic(uid, dev), b[0])
        # a batch that does not decode: a good one cut short
        other = batches(dev, build(dev, 10, seq0=100, t0=now - 7200))[0]
        pub.send(topic(uid, dev), other[:-3])
        # a batch on another box's topic: every sample is a device mismatch
        pub.send(topic(uid, f"y{uid}"), batches(dev, build(dev, 4, seq0=200, t0=now - 600))[0])
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 25, 30, what="the good 25 written")
        eventually(lambda: gw.stats()["received"] == 3, 30)
        st = gw.stats()
        assert (st["malformed"], st["rejected"], st["dead_lettered"]) == (1, 5 + 4, 1 + 5 + 4)
        assert st["acked"] == 3
        assert_influx_exact(influx, f"db{uid}", dev, good)
        dl = gw.spool.dead_letters(limit=100)
        ahead_dl = [d for d in dl if "ahead of the gateway clock" in d["reason"]]
        assert sorted(d["seq"] for d in ahead_dl) == [25, 26, 27, 28, 29]
        assert all(d["reason"].startswith("batch sample ") and "/30: " in d["reason"]
                   for d in ahead_dl)
        # each dead letter holds that sample's own single payload, so it can be requeued alone
        assert sorted(bytes(d["payload"]) for d in ahead_dl) == sorted(p for p, _t, _e in ahead)
        mal = [d for d in dl if d["reason"].startswith("malformed:")]
        assert len(mal) == 1 and bytes(mal[0]["payload"]) == other[:-3]
        mism = [d for d in dl if "device mismatch" in d["reason"]]
        assert len(mism) == 4 and {d["device"] for d in mism} == {f"y{uid}"}
        assert gw.alive()
        pub.close()
    finally:
        gw.stop()


def test_messages_spanning_socket_reads_are_parsed(tmp_path, influx, uid):
    # The ingest reads the broker's socket in 64 KiB chunks (ReadBufferedClient): packets that
    # span chunks, and many packets in one chunk, must come out whole and in order. (The
    # shipped broker refuses payloads over 4,000 bytes; this one takes them, to make packets
    # larger than a chunk.)
    from envbox.servers import Mosquitto
    broker = Mosquitto(tmp_path / "mq-big", extra_conf="message_size_limit 262144").start()
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        dev = f"s{uid}"
        samples = build(dev, 400)
        big = [bytes([0xEE]) * n for n in (70_000, 65_536 - 7, 200_000)]   # malformed, large
        for i, (p, _t, _e) in enumerate(samples):
            pub.send(topic(uid, dev), p)
            if i in (50, 51, 300):
                pub.send(topic(uid, dev), big[(i - 50) % 3 if i != 300 else 2])
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 400, 30, what="400 written")
        eventually(lambda: gw.stats()["received"] == 403, 30)
        st = gw.stats()
        assert (st["malformed"], st["spooled"], st["duplicates"]) == (3, 400, 0)
        sizes = sorted(d["payload_len"] for d in gw.spool.dead_letters())
        assert sizes == sorted([70_000, 65_536 - 7, 200_000])
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        pub.close()
    finally:
        gw.stop()
        broker.stop()
