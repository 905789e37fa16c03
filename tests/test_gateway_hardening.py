"""A gateway that cannot be rewritten or exhausted (issue 11 §5, §6), each finding through real
mosquitto, the gateway and InfluxDB 1.6.7: a replay with other values changes nothing stored, a
too-old sample is refused, a box skipping every other seq costs bounded memory, a flood of
large garbage cannot fill the disk, and one box flooding during an outage does not evict
another box's rows. The sample's flags reach InfluxDB."""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from envbox.firmware import wire
from envbox.gateway import Gateway
from envbox.servers import Mosquitto, eventually, free_port
from test_gateway_batches import batches
from test_gateway_e2e import (Publisher, assert_influx_exact, broker, build,  # noqa: F401
                              daemon_subscribed, influx, influx1_sink, influx_rows, make_cfg,
                              start_daemon, topic, uid, write_toml)

pytestmark = pytest.mark.slow

EPOCH_2020 = wire.EPOCH_2020_UNIX_S


def sample(dev, seq, t, pm25, flags=wire.FLAG_CLOCK_FROM_GPS):
    s = wire.Sample(dev.encode())
    s.seq, s.t_s2020, s.flags = seq, t - EPOCH_2020, flags
    s.set(wire.CH_PM25, wire.STATUS_OK, pm25)
    return wire.encode(s)


def test_a_replay_with_other_values_changes_nothing_stored(tmp_path, broker, influx, uid):
    """Issue 11: after seq 5 with pm25=10 was stored, a replay of seq 5 with pm25=999 stored
    999; another seq at the same time overwrote too."""
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        dev = f"r{uid}"
        t5 = int(time.time()) - 3600
        pub.send(topic(uid, dev), sample(dev, 5, t5, 10, flags=0x11))
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 1, 20)
        for p in (sample(dev, 5, t5, 999, flags=0x11),      # same seq, other value
                  sample(dev, 6, t5, 999, flags=0x11),      # other seq, same time
                  sample(dev, 5, t5 + 10, 10, flags=0x11),  # same seq, other time
                  sample(dev, 5, t5, 10, flags=0x11)):        # identical
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["received"] == 5, 20)
        st = gw.stats()
        assert (st["conflicts"], st["duplicates"], st["spooled"], st["dead_lettered"]) == \
            (3, 3, 1, 3)
        time.sleep(0.5)                  # nothing more may reach InfluxDB
        rows = influx_rows(influx, f"db{uid}", dev)
        assert [(r["time"], r["seq"], r["pm25_ugm3"], r["flags"]) for r in rows] == \
            [(t5, 5.0, 10.0, 17.0)]
        reasons = sorted(d["reason"].split(" is ")[0] for d in gw.spool.dead_letters())
        assert reasons == ["conflict: seq 5", "conflict: seq 5",
                           f"conflict: time {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t5))}"]
        pub.close()
    finally:
        gw.stop()


def test_a_too_old_sample_is_dead_lettered_unless_the_limit_is_off(tmp_path, broker, influx,
                                                                    uid):
    """Issue 11: a sample 5 years old was accepted."""
    dev = f"o{uid}"
    now = int(time.time())
    old = [sample(dev, 1, now - 5 * 365 * 86400, 7), sample(dev, 2, now - 17 * 86400, 8)]
    young = sample(dev, 3, now - 15 * 86400, 9)
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    assert cfg.ingest.max_past_s == 16 * 86400
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        for p in old + [young]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 1, 20)
        st = gw.stats()
        assert (st["too_old"], st["dead_lettered"]) == (2, 2)
        assert all(d["reason"].startswith("too old:") for d in gw.spool.dead_letters())
        # held (in the dead letters): counted as received, so the box is acknowledged for them
        d = {x["device"]: x for x in gw.spool.device_status()}[dev]
        assert d["received"] == 3
        assert [r["seq"] for r in influx_rows(influx, f"db{uid}", dev)] == [3.0]
        pub.close()
    finally:
        gw.stop()
    # a fleet simulator publishing years of history turns the limit off
    cfg = make_cfg(tmp_path, broker, uid + "x", influx1_sink(influx, uid),
                   ingest={"max_past_s": 0}, spool={"path": str(tmp_path / "s2.sqlite3")})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid + "x")
        dev2 = f"p{uid}"
        pub.send(f"t{uid}x/v1/{dev2}/data", sample(dev2, 1, now - 5 * 365 * 86400, 7))
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 1, 20)
        assert gw.stats()["too_old"] == 0
        pub.close()
    finally:
        gw.stop()


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_seq_step_2_batches_cost_bounded_memory(tmp_path, broker, influx, uid):
    """Issue 11: 1,000 batches (0.79 MB) with seq step 2 made 255,059 gap ranges in RAM: the
    gateway went from 29 to 132 MB and a commit for that box from 0.9 to 82 ms. Now the seq
    ranges per device are bounded (max_seq_ranges): memory growth under 10 MB (the ingest
    process, as deployed: a daemon with its writer process). Commit time is printed, not
    asserted (benchmarks/gateway_throughput.py measures it)."""
    port = free_port()
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   http={"listen": f"127.0.0.1:{port}"})
    log = open(tmp_path / "gw.log", "ab")
    proc = start_daemon(write_toml(tmp_path / "gw.toml", cfg), log)
    try:
        daemon_subscribed(cfg.spool.path, proc, tmp_path / "gw.log")
        dev = f"g{uid}"
        t0 = int(time.time()) - 8 * 86400         # 60,000 samples 10 s apart: 6.9 days
        pub = Publisher(broker, uid)

        def send(k0, k1):
            out = []
            for k in range(k0, k1):
                samples = [(sample(dev, 2 * (60 * k + i), t0 + 10 * (60 * k + i), i), 0, 0)
                           for i in range(60)]
                out.extend(batches(dev, samples))
            for b in out:
                pub.send(topic(uid, dev), b)
            pub.wait()
            eventually(lambda: metric(port, "envbox_gateway_received_total") >= k1, 60)
            return (metric(port, "envbox_gateway_commit_us_total"),
                    metric(port, "envbox_gateway_commits_total"))

        # warm: imports, caches, SQLite pages, and commit groups at their largest
        # ([ingest] commit_max_samples: 15,000 samples = 250 batches)
        us0, n0 = send(0, 300)
        rss0 = rss_kb(proc.pid)
        us1, n1 = send(300, 650)
        us2, n2 = send(650, 1000)
        rss1 = rss_kb(proc.pid)
        print(f"seq-step-2: rss {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB; mean commit "
              f"{(us1 - us0) / max(1, n1 - n0) / 1000:.2f} ms (batches 300-650), "
              f"{(us2 - us1) / max(1, n2 - n1) / 1000:.2f} ms (650-1000)")
        assert rss1 - rss0 < 10 * 1024
        c = sqlite3.connect(cfg.spool.path)
        assert c.execute("SELECT COUNT(*) FROM seq_ranges").fetchone()[0] == \
            cfg.spool.max_seq_ranges
        c.close()
        eventually(lambda: metric(port, "envbox_gateway_written_total") == 60_000, 60)
        pub.close()
    finally:
        proc.kill()
        proc.wait()
        log.close()


def spool_bytes(path):
    return sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm")
               if os.path.exists(p))


def test_garbage_flood_cannot_fill_the_disk(tmp_path, influx, uid):
    """Issue 11: 200 garbage payloads of 262 KB grew the spool from 0.1 to 76.7 MB. The shipped
    broker now refuses them (message_size_limit 4000); behind a broker that lets them through,
    the dead letters keep 4 KB of each, with its length: growth under 5 MB."""
    garbage = [bytes([0xEE]) * 262_144] * 200
    shipped = Mosquitto(tmp_path / "mq-shipped").start()
    big = Mosquitto(tmp_path / "mq-big", extra_conf="message_size_limit 0").start()
    try:
        for name, mq in (("shipped", shipped), ("big", big)):
            cfg = make_cfg(tmp_path, mq, uid + name, influx1_sink(influx, uid),
                           spool={"path": str(tmp_path / f"{name}.sqlite3")})
            gw = Gateway(cfg).start()
            try:
                assert gw.ingest.wait_subscribed(10)
                before = spool_bytes(cfg.spool.path)
                pub = Publisher(mq, uid + name)
                # as a box speaks, MQTT 3.1.1 (paho's v5 client refuses to send a packet over
                # the broker's maximum itself)
                pub.c.disconnect()
                pub.c.loop_stop()
                import paho.mqtt.client as mqtt
                pub.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"g{uid}{name}",
                                    protocol=mqtt.MQTTv311)
                pub.c.connect("127.0.0.1", mq.port)
                pub.c.loop_start()
                dev = f"d{uid}"
                for g in garbage:
                    pub.send(f"t{uid}{name}/v1/{dev}/data", g)
                good = build(dev, 1)[0][0]
                pub.send(f"t{uid}{name}/v1/{dev}/data", good)     # after the flood
                pub.wait()
                eventually(lambda: gw.stats()["written"] == 1, 60)
                st = gw.stats()
                if name == "shipped":          # the broker took and dropped them
                    assert st["received"] == 1 and st["malformed"] == 0
                    pub.close()
                    continue
                eventually(lambda: gw.stats()["received"] == 201, 30)
                assert gw.stats()["malformed"] == 200
                growth = spool_bytes(cfg.spool.path) - before
                print(f"garbage flood: spool grew {growth / 1e6:.2f} MB")
                assert growth < 5_000_000
                dl = gw.spool.dead_letters(limit=1)[0]
                assert (len(dl["payload"]), dl["payload_len"]) == (4096, 262_144)
                pub.close()
            finally:
                gw.stop()
    finally:
        shipped.stop()
        big.stop()


def test_one_box_flooding_an_outage_does_not_evict_another(tmp_path, broker, influx, uid):
    """Issue 11: drop-oldest was global, so one box's flood evicted other boxes' unsent samples
    while InfluxDB was away."""
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), spool={"max_rows": 500})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        influx.stop()
        pub = Publisher(broker, uid)
        quiet, flood = f"q{uid}", f"f{uid}"
        q_samples = build(quiet, 60)
        f_samples = build(flood, 3000, seq0=10_000)
        for p, _t, _e in q_samples[:30]:
            pub.send(topic(uid, quiet), p)
        for b in batches(flood, f_samples):
            pub.send(topic(uid, flood), b)
        for p, _t, _e in q_samples[30:]:
            pub.send(topic(uid, quiet), p)
        pub.wait()
        eventually(lambda: gw.stats()["received_samples"] == 3060, 30)
        st = {d["device"]: d for d in gw.spool.device_status()}
        assert st[quiet]["in_spool"] == 60 and st[quiet]["dropped"] == 0
        assert (st[flood]["in_spool"], st[flood]["dropped"]) == (440, 2560)
        influx.start()
        eventually(lambda: gw.stats()["written"] >= 500 and gw.spool.depth == 0, 60)
        assert_influx_exact(influx, f"db{uid}", quiet, q_samples)
        # the flood's newest 440; and the rows of the write that was being retried when
        # InfluxDB went away, if drop-oldest removed them from the spool meanwhile (the writer
        # still holds them, so they are written rather than lost)
        stored = {r["time"]: r for r in influx_rows(influx, f"db{uid}", flood)}
        newest = f_samples[-440:]
        assert {t for _p, t, _e in newest} <= set(stored)
        by_t = {t: e for _p, t, e in f_samples}
        for t, r in stored.items():
            assert {k: v for k, v in r.items() if v is not None
                    and k not in ("time", "device")} == by_t[t]
        pub.close()
    finally:
        gw.stop()
