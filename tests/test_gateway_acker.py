"""The gateway's acknowledgement scheduler (gateway/acks.py) on a real SQLite spool, with its own
clock: what is acknowledged (only committed seqs, dead letters included, the ranges that changed)
and when (every_samples, max_delay_s, promptly for batches and resends, never more often than
min_interval_s). The end-to-end tests through mosquitto are in test_gateway_acks.py."""

import time

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.gateway import config as gwconfig
from envbox.gateway.acks import Acker, publish_packet_bytes
from envbox.gateway.metrics import Counters
from envbox.gateway.spool import Accepted, Rejected, Spool


def acc(device, seq):
    return Accepted(device, seq, 1_700_000_000 + 10 * seq, f"{device}:{seq}".encode(), time.time())


class Rig:
    def __init__(self, tmp_path, **ack):
        base = {"every_samples": 4, "max_delay_s": 30.0, "min_interval_s": 1.0}
        base.update(ack)
        self.cfg = gwconfig.Config().replace(
            mqtt={"username": "gw-a"}, ack=base, spool={"path": str(tmp_path / "s.db")})
        self.spool = Spool(self.cfg.spool.path)
        self.sent = []          # (topic, ranges)
        self.connected = True
        self.counters = Counters()
        self.acker = Acker(self.cfg, self.spool, self.counters, self._publish)

    def _publish(self, topic, payload):
        if not self.connected:
            return False
        self.sent.append((topic, wire.decode_ack(payload)))
        return True

    def commit(self, items, now, batch=(), ):
        res = self.spool.ingest(items)
        self.acker.committed(items, set(batch), res.dup_devices, now_s=now)
        return res


def test_topic_names_the_device_and_the_gateway_account(tmp_path):
    r = Rig(tmp_path)
    assert r.acker.topic("sj-001") == "envbox/v1/sj-001/ack/gw-a"
    cfg = gwconfig.Config().replace(mqtt={"topic": "t1/v1/+/data", "client_id": "gw-7"})
    a = Acker(cfg, r.spool, Counters(), lambda t, p: True)
    assert a.topic("x") == "t1/v1/x/ack/gw-7"        # no login: the client id


def test_every_samples_or_max_delay_whichever_first(tmp_path):
    r = Rig(tmp_path)
    r.commit([acc("a", 0), acc("a", 1), acc("a", 2)], now=100.0)
    assert r.acker.tick(100.5) == 0 and r.sent == []
    r.commit([acc("a", 3)], now=101.0)               # the 4th: due now
    assert r.acker.tick(101.0) == 1
    assert r.sent == [("envbox/v1/a/ack/gw-a", [(0, 4)])]
    r.commit([acc("a", 4)], now=102.0)               # one sample: due at 102 + 30
    assert r.acker.tick(131.9) == 0
    assert r.acker.tick(132.0) == 1
    assert r.sent[-1][1] == [(0, 5)]


def test_min_interval_holds_back_a_burst(tmp_path):
    r = Rig(tmp_path, min_interval_s=5.0)
    r.commit([acc("a", i) for i in range(4)], now=10.0)
    assert r.acker.tick(10.0) == 1
    r.commit([acc("a", i) for i in range(4, 8)], now=11.0)
    assert r.acker.tick(14.9) == 0
    assert r.acker.tick(15.0) == 1
    assert r.sent[-1][1] == [(0, 8)]


def test_a_batch_or_a_resend_is_acknowledged_promptly(tmp_path):
    r = Rig(tmp_path, every_samples=1000, max_delay_s=600.0)
    r.commit([acc("a", 0)], now=1.0)                 # live: waits for max_delay_s
    assert r.acker.tick(2.0) == 0
    r.commit([acc("b", i) for i in range(5)], now=2.0, batch=["b"])
    assert r.acker.tick(2.0) == 1 and r.sent[-1] == ("envbox/v1/b/ack/gw-a", [(0, 5)])
    r.commit([acc("b", 3)], now=2.5)                 # a resend: the box waits for us
    assert r.acker.tick(2.9) == 0                    # min_interval_s since the last
    assert r.acker.tick(3.0) == 1 and r.sent[-1][1] == [(0, 5)]
    assert r.acker.tick(600.9) == 0
    assert r.acker.tick(601.0) == 1 and r.sent[-1] == ("envbox/v1/a/ack/gw-a", [(0, 1)])


def test_dead_lettered_samples_are_held_and_acknowledged(tmp_path):
    r = Rig(tmp_path, every_samples=1)
    dl = Rejected("envbox/v1/a/data", "timestamp too far ahead", b"x", time.time(), device="a",
                  seq=7, t_utc_s=0, count_seq=True)
    garbage = Rejected("envbox/v1/a/data", "malformed: short", b"x", time.time(), device="a")
    r.commit([acc("a", 5), dl, garbage], now=1.0)
    r.acker.tick(1.0)
    assert r.sent == [("envbox/v1/a/ack/gw-a", [(5, 6), (7, 8)])]


def test_only_ranges_that_changed_are_sent_16_per_message(tmp_path):
    r = Rig(tmp_path, every_samples=1, min_interval_s=0.0)
    r.commit([acc("a", s) for s in range(0, 100, 2)], now=1.0)   # 50 single ranges
    r.acker.tick(1.0)
    # four messages, the newest ranges last (that one stays retained)
    assert [len(rs) for _t, rs in r.sent] == [16, 16, 16, 2]
    assert [x for _t, rs in r.sent for x in rs] == [(s, s + 1) for s in range(0, 100, 2)]
    r.commit([acc("a", 1)], now=2.0)                                 # fills the gap 0..2
    r.acker.tick(2.0)
    assert r.sent[-1][1] == [(0, 3)]


def test_not_connected_keeps_it_due(tmp_path):
    r = Rig(tmp_path, every_samples=1)
    r.connected = False
    r.commit([acc("a", 0)], now=1.0)
    assert r.acker.tick(1.0) == 0
    assert r.counters.get("ack_publish_failed") == 1
    r.connected = True
    assert r.acker.tick(1.2) == 0                    # backs off half a second
    assert r.acker.tick(1.6) == 1 and r.sent == [("envbox/v1/a/ack/gw-a", [(0, 1)])]


def test_flush_sends_everything_pending(tmp_path):
    r = Rig(tmp_path, every_samples=1000, max_delay_s=1000.0)
    r.commit([acc("a", 0), acc("b", 9)], now=1.0)
    assert r.acker.flush() == 2
    assert sorted(r.sent) == [("envbox/v1/a/ack/gw-a", [(0, 1)]),
                              ("envbox/v1/b/ack/gw-a", [(9, 10)])]


def test_seqs_beyond_30_bits_are_not_acknowledged(tmp_path):
    r = Rig(tmp_path, every_samples=1)
    top = (1 << 30) - 1          # the ack's ranges end (excluded) at 2^30 - 1 at most
    r.commit([acc("a", top - 2), acc("a", top - 1), acc("a", top), acc("a", top + 5)], now=1.0)
    r.acker.tick(1.0)
    assert r.sent == [("envbox/v1/a/ack/gw-a", [(top - 2, top)])]
    r.commit([acc("a", top + 9)], now=2.0)
    r.acker.tick(5.0)
    assert len(r.sent) == 1 and r.counters.get("ack_unrepresentable") == 1


def test_disabled_sends_nothing(tmp_path):
    r = Rig(tmp_path, enabled=False, every_samples=1)
    r.commit([acc("a", 0)], now=1.0)
    assert r.acker.tick(100.0) == 0 and r.acker.flush() == 0 and r.sent == []


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=30), min_size=1,
                       max_size=12),
       failing=st.sets(st.integers(0, 11)))
def test_never_acknowledges_what_is_not_committed(tmp_path_factory, groups, failing):
    """Random groups, some of whose commits fail: every acknowledged seq is in a committed
    group, and every committed seq is acknowledged by the end (flush)."""
    r = Rig(tmp_path_factory.mktemp("a"), every_samples=3, min_interval_s=0.0)
    committed = set()
    for k, g in enumerate(groups):
        items = [acc("a", s) for s in g]
        if k in failing:
            # a commit that fails: the spool rolls it back and ingest never calls committed()
            r.spool.conn().execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON samples "
                                   "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
            with pytest.raises(Exception):
                r.spool.ingest(items)
            r.spool.conn().execute("DROP TRIGGER temp.boom")
        else:
            r.commit(items, now=float(k))
            committed |= set(g)
        r.acker.tick(float(k) + 0.5)
    r.acker.flush()
    acked = {s for _t, ranges in r.sent for lo, hi in ranges for s in range(lo, hi)}
    assert acked == committed


def test_packet_bytes_of_a_live_acknowledgement():
    topic = "envbox/v1/sj-001/ack/envbox-gateway"
    # one range, seqs below 2^28 (85 years at 10 s): at most 4 + 4 varint bytes
    payload = wire.encode_ack([(2_500_000, 5_000_000)])
    assert len(topic) == 35 and len(payload) == 10
    assert publish_packet_bytes(len(topic), len(payload)) == 49
    assert publish_packet_bytes(100, 30) == 1 + 2 + 2 + 100 + 30
