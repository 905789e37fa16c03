"""Gateway spool on a real SQLite file: durability settings, idempotent redelivery, completeness
accounting by seq ranges, the max_rows bound, and the writer-side moves."""

import sqlite3
import time

from hypothesis import given, settings, strategies as st

from envbox.gateway.spool import Accepted, Rejected, Spool


def acc(device, seq, t=None, payload=None):
    t = 1_700_000_000 + 10 * seq if t is None else t
    return Accepted(device, seq, t, payload or f"{device}:{seq}".encode(), time.time())


def test_wal_and_synchronous_full_by_default(tmp_path):
    sp = Spool(tmp_path / "s.db")
    c = sp.conn()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    sp2 = Spool(tmp_path / "n.db", synchronous="normal")
    assert sp2.conn().execute("PRAGMA synchronous").fetchone()[0] == 1


def test_committed_rows_are_visible_to_another_process_connection(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([acc("a", 1), acc("a", 2)])
    other = sqlite3.connect(tmp_path / "s.db")
    assert other.execute("SELECT device, seq FROM samples ORDER BY id").fetchall() == \
        [("a", 1), ("a", 2)]


def test_redelivery_does_not_create_a_second_row(tmp_path):
    sp = Spool(tmp_path / "s.db")
    r1 = sp.ingest([acc("a", 1), acc("a", 2)])
    r2 = sp.ingest([acc("a", 2), acc("a", 1), acc("a", 3)])   # broker redelivers after a crash
    assert (r1.spooled, r1.duplicates) == (2, 0)
    assert (r2.spooled, r2.duplicates) == (1, 2)
    assert sp.count_rows() == 3 and sp.depth == 3
    [dev] = sp.device_status()
    assert (dev["received"], dev["duplicates"], dev["messages"]) == (3, 2, 5)


def test_redelivery_after_the_row_was_written_is_counted_as_duplicate(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([acc("a", 1)])
    sp.delete_written(sp.fetch(10))
    res = sp.ingest([acc("a", 1)])
    # the row comes back (writing it again is harmless: same measurement+tags+time) but the
    # completeness accounting knows it is a copy
    assert res.duplicates == 1
    [dev] = sp.device_status()
    assert dev["received"] == 1 and dev["written"] == 1


def test_same_seq_different_time_is_a_different_row(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([acc("a", 1, t=1_700_000_000), acc("a", 1, t=1_700_000_010)])
    assert sp.count_rows() == 2


def test_missing_ranges(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([acc("a", s) for s in (5, 6, 7, 10, 12, 13, 20)])
    sp.ingest([acc("b", 0)])
    a, b = sp.device_status()
    assert a["device"] == "a"
    assert (a["first_seq"], a["last_seq"], a["expected"], a["received"], a["missing"]) == \
        (5, 20, 16, 7, 9)
    assert a["missing_ranges"] == [(8, 9), (11, 11), (14, 19)]
    assert (b["expected"], b["missing"], b["missing_ranges"]) == (1, 0, [])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 200), max_size=40), min_size=1, max_size=5))
def test_seq_accounting_matches_a_set_model(tmp_path_factory, groups):
    sp = Spool(tmp_path_factory.mktemp("spool") / "s.db")
    seen = set()
    dups = 0
    for g in groups:
        for s in g:
            dups += s in seen
            seen.add(s)
        sp.ingest([acc("d", s) for s in g])
    # a reopened spool (no in-memory cache) must agree too
    sp2 = Spool(sp.path)
    status = sp2.device_status()
    if not seen:
        assert status == []
        return
    [d] = status
    lo, hi = min(seen), max(seen)
    missing = sorted(set(range(lo, hi + 1)) - seen)
    assert d["received"] == len(seen)
    assert d["expected"] == hi - lo + 1
    assert d["duplicates"] == dups
    flat = [s for a, b in d["missing_ranges"] for s in range(a, b + 1)]
    assert flat == missing
    sp2.ingest([acc("d", hi + 1)])
    assert sp2.device_status()[0]["received"] == len(seen) + 1


def test_max_rows_drops_oldest_and_counts(tmp_path):
    sp = Spool(tmp_path / "s.db", max_rows=5)
    sp.ingest([acc("a", s) for s in range(4)])
    res = sp.ingest([acc("a", s) for s in range(4, 8)])
    assert res.dropped_oldest == 3
    assert [r.seq for r in sp.fetch(100)] == [3, 4, 5, 6, 7]
    assert sp.counters()["dropped_oldest"] == 3
    assert sp.depth == 5


def test_dead_letters_from_ingest_and_sink(tmp_path):
    sp = Spool(tmp_path / "s.db")
    now = time.time()
    sp.ingest([acc("a", 1), acc("a", 2),
               Rejected("envbox/v1/a/data", "malformed: payload too short", b"\x01", now,
                        device="a"),
               Rejected("envbox/v1/a/data", "timestamp in the future", b"xx", now, device="a",
                        seq=3, t_utc_s=2_000_000_000, count_seq=True)])
    rows = sp.fetch(10)
    sp.dead_letter_rows(rows[:1], "refused by the database (HTTP 400)", '{"error":"conflict"}')
    assert [r.seq for r in sp.fetch(10)] == [2]
    dl = sp.dead_letters()
    assert [(d["source"], d["reason"][:9]) for d in dl] == \
        [("ingest", "malformed"), ("ingest", "timestamp"), ("sink", "refused b")]
    assert dl[2]["server_answer"] == '{"error":"conflict"}'
    assert dl[2]["payload"] == b"a:1"
    [d] = sp.device_status()
    # seq 3 arrived (dead-lettered), seq 1 arrived (refused later): nothing is missing
    assert (d["expected"], d["received"], d["missing"], d["dead_lettered"]) == (3, 3, 0, 3)


def test_requeue_moves_back_only_what_now_passes(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([acc("a", 1)])
    sp.dead_letter_rows(sp.fetch(10), "refused", "x")
    sp.ingest([Rejected("t", "malformed: junk", b"junk", time.time())])
    assert sp.count_rows() == 0

    def check(topic, payload, source):
        return acc("a", 1, payload=payload) if payload == b"a:1" else "still malformed"

    moved, kept = sp.requeue(None, check)
    assert moved == 1 and [k[1] for k in kept] == ["still malformed"]
    assert [r.payload for r in sp.fetch(10)] == [b"a:1"]
    assert sp.dead_letter_count() == 1


def test_dead_letters_are_bounded_too(tmp_path):
    sp = Spool(tmp_path / "s.db", max_dead_letters=3)
    now = time.time()
    sp.ingest([Rejected("t", f"malformed: {i}", bytes([i]), now) for i in range(5)])
    assert [d["reason"] for d in sp.dead_letters()] == ["malformed: 2", "malformed: 3",
                                                        "malformed: 4"]
    assert sp.counters()["dead_letters_dropped"] == 2


# --- a model-based test: the spool against a plain-Python model, with "crashes" (reopen) ----------

from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule  # noqa: E402


class SpoolModel(RuleBasedStateMachine):
    """Random interleavings of ingest groups (with redeliveries), writer rounds (written or
    refused), and reopening the file (what a restart after SIGKILL sees). The model: a dict of
    rows waiting, a set of seqs seen per device, counts written and dead-lettered."""

    @initialize()
    def setup(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="spool-model-")
        self.path = f"{self.dir}/s.db"
        self.sp = Spool(self.path)
        self.waiting = {}          # (device, seq, t) -> payload, in arrival order
        self.seen = {}             # device -> set of seqs
        self.written = {}
        self.dead = 0

    @rule(group=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 30)),
                         min_size=1, max_size=12))
    def ingest(self, group):
        items = [acc(d, s) for d, s in group]
        self.sp.ingest(items)
        for it in items:
            self.seen.setdefault(it.device, set()).add(it.seq)
            self.waiting.setdefault((it.device, it.seq, it.t_utc_s), it.payload)

    @rule(n=st.integers(1, 10), refuse=st.booleans())
    def writer_round(self, n, refuse):
        rows = self.sp.fetch(n)
        expected = list(self.waiting)[:n]
        assert [(r.device, r.seq, r.t_utc_s) for r in rows] == expected   # oldest first
        if refuse:
            self.sp.dead_letter_rows(rows, "refused", "400")
            self.dead += len(rows)
        else:
            self.sp.delete_written(rows)
            for r in rows:
                self.written[r.device] = self.written.get(r.device, 0) + 1
        for k in expected:
            del self.waiting[k]

    @rule()
    def restart(self):
        self.sp.close()
        self.sp = Spool(self.path)

    @invariant()
    def agrees_with_model(self):
        assert self.sp.depth == len(self.waiting) == self.sp.count_rows()
        status = {d["device"]: d for d in self.sp.device_status()}
        assert set(status) == set(self.seen)
        for dev, seqs in self.seen.items():
            d = status[dev]
            assert d["received"] == len(seqs)
            assert d["expected"] == max(seqs) - min(seqs) + 1
            assert d["written"] == self.written.get(dev, 0)
        assert self.sp.dead_letter_count() == self.dead

    def teardown(self):
        import shutil
        if hasattr(self, "sp"):
            self.sp.close()
            shutil.rmtree(self.dir, ignore_errors=True)


SpoolModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_spool_against_model = SpoolModel.TestCase


def test_depth_stays_right_when_drop_oldest_races_the_writer(tmp_path):
    sp = Spool(tmp_path / "s.db", max_rows=4)
    sp.ingest([acc("a", s) for s in range(4)])
    in_flight = sp.fetch(2)                       # the writer took seq 0, 1 ...
    sp.ingest([acc("a", s) for s in range(4, 6)])  # ... and the bound drops them meanwhile
    assert sp.delete_written(in_flight) == 0
    assert sp.depth == sp.count_rows() == 4


# --- issue 11: a spool that cannot be rewritten or exhausted ----------------------------------

from envbox.firmware import wire  # noqa: E402

NOW = time.time()


def real(device, seq, pm25=10, t=None, flags=0):
    """A real wire sample from the last days (inside the conflict window)."""
    s = wire.Sample(device.encode())
    s.seq = seq
    t = int(NOW) - 86400 + 10 * seq if t is None else t
    s.t_s2020 = t - wire.EPOCH_2020_UNIX_S
    s.flags = flags
    s.set(wire.CH_PM25, wire.STATUS_OK, pm25)
    return Accepted(device, seq, t, wire.encode(s), time.time())


def stored(sp):
    return sp.conn().execute("SELECT device, seq, t_utc_s, payload FROM samples ORDER BY id"
                             ).fetchall()


def test_a_replay_with_other_values_is_a_conflict_and_changes_nothing(tmp_path):
    sp = Spool(tmp_path / "s.db")
    first = real("a", 5, pm25=10)
    sp.ingest([first])
    sp.delete_written(sp.fetch(10))                  # already in InfluxDB
    res = sp.ingest([real("a", 5, pm25=999)])
    assert (res.spooled, res.conflicts, res.dead_lettered, res.duplicates) == (0, 1, 1, 1)
    [dl] = sp.dead_letters()
    assert dl["reason"].startswith("conflict: seq 5 is stored with other values")
    assert stored(sp) == []                          # nothing to write: the stored point stays
    # the same while the first copy still waits in the spool
    sp.ingest([real("a", 6, pm25=10)])
    res = sp.ingest([real("a", 6, pm25=11)])
    assert res.conflicts == 1 and [r[3] for r in stored(sp)] == [real("a", 6, pm25=10).payload]
    assert sp.counters()["conflicts"] == 2


def test_another_seq_at_a_stored_time_is_a_conflict(tmp_path):
    sp = Spool(tmp_path / "s.db")
    a5 = real("a", 5)
    sp.ingest([a5])
    res = sp.ingest([real("a", 900, t=a5.t_utc_s)])
    assert res.conflicts == 1 and res.spooled == 0
    assert "is stored as seq 5" in sp.dead_letters()[0]["reason"]
    # a seq stored with another time is one too, also within one group
    res = sp.ingest([real("a", 7), real("a", 7, t=a5.t_utc_s + 1)])
    assert (res.spooled, res.conflicts) == (1, 1)
    assert "is stored with time" in sp.dead_letters()[1]["reason"]
    # another device at the same time is no conflict
    assert sp.ingest([real("b", 5, t=a5.t_utc_s)]).spooled == 1


def test_an_identical_copy_is_a_duplicate_also_after_it_was_written(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([real("a", s) for s in range(5)])
    sp.delete_written(sp.fetch(10))
    # a redelivery, and the box resending from its journal (byte for byte the same sample)
    res = sp.ingest([real("a", 3), real("a", 4), real("a", 5)])
    assert (res.spooled, res.duplicates, res.conflicts, res.dead_lettered) == (1, 2, 0, 0)
    assert [r[1] for r in stored(sp)] == [5]         # not written again
    # but another flag (calibrated) is other content
    res = sp.ingest([real("a", 2, flags=wire.FLAG_CALIBRATED)])
    assert res.conflicts == 1


def test_the_history_survives_a_restart_and_is_pruned_after_the_window(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([real("a", 1)])
    sp.close()
    sp = Spool(tmp_path / "s.db")
    assert sp.ingest([real("a", 1, pm25=3)]).conflicts == 1
    # a short window: samples older than it are neither checked nor remembered, and what left
    # it is pruned (at most every 10 minutes per box; here the clock of the last pruning is
    # moved back instead of waiting)
    sp2 = Spool(tmp_path / "s.db", conflict_window_s=3600)
    assert sp2.ingest([real("a", 2)]).spooled == 1
    seqs = "SELECT seq FROM history ORDER BY seq"
    assert sp2.conn().execute(seqs).fetchall() == [(1,)]       # seq 2 is older than 1 h
    sp2.ingest([real("a", 3, t=int(NOW) - 10)])
    sp2._pruned = {k: v - 601 for k, v in sp2._pruned.items()}
    sp2.ingest([real("a", 4, t=int(NOW))])
    assert sp2.conn().execute(seqs).fetchall() == [(3,), (4,)]  # seq 1 pruned
    assert sp2.ingest([real("a", 1, pm25=3)]).conflicts == 0


def test_gap_accounting_is_bounded_per_device(tmp_path):
    sp = Spool(tmp_path / "s.db", max_seq_ranges=64)
    for k in range(50):                               # seq step 2: every seq its own range
        sp.ingest([real("a", 2 * (60 * k + i)) for i in range(60)])
    assert len(sp._ranges["a"]) == 64
    c = sp.conn()
    assert c.execute("SELECT COUNT(*) FROM seq_ranges WHERE device='a'").fetchone()[0] == 64
    [d] = Spool(tmp_path / "s.db").device_status()    # also from the file
    n = 3000
    assert (d["received"], d["first_seq"], d["last_seq"]) == (n, 0, 2 * (n - 1))
    assert d["missing"] == n - 1 and len(d["missing_ranges"]) == 63
    assert d["missing_before_seq"] == 2 * (n - 64) - 1     # above the last folded seq
    # a resend of a folded seq is still recognised (the history knows it)
    res = sp.ingest([real("a", 10)])
    assert (res.duplicates, res.spooled) == (1, 0)
    # and a new one below the floor counts as received
    sp.ingest([real("a", 11)])
    assert Spool(tmp_path / "s.db").device_status()[0]["received"] == n + 1


def test_dead_letters_bounded_in_bytes_payloads_truncated(tmp_path):
    sp = Spool(tmp_path / "s.db", max_dead_letter_bytes=400_000, dead_letter_payload_bytes=4096)
    big = b"\x01" + bytes(262_143)
    for i in range(200):
        sp.ingest([Rejected("envbox/v1/a/data", "malformed: junk", big, time.time(), device="a")])
    c = sp.conn()
    n, stored_bytes = c.execute("SELECT COUNT(*), SUM(length(payload)) FROM dead_letters"
                                ).fetchone()
    assert stored_bytes <= 400_000 and 80 < n < 100
    assert sp.counters()["dead_letters_dropped"] == 200 - n
    dl = sp.dead_letters(limit=1)[0]
    assert dl["payload_len"] == 262_144 and dl["payload"] == big[:4096]
    sp.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "s.db").stat().st_size < 5_000_000
    # the running total matches the table
    from envbox.gateway.spool import Spool as S
    assert sp.counters()["dead_letter_bytes"] == c.execute(
        f"SELECT SUM({S._DL_BYTES}) FROM dead_letters").fetchone()[0]
    # a truncated payload is never requeued
    moved, kept = sp.requeue(None, lambda t, p, s: "x")
    assert moved == 0 and all("truncated" in why for _i, why in kept)


def test_drop_oldest_is_fair_between_devices(tmp_path):
    sp = Spool(tmp_path / "s.db", max_rows=100)
    sp.ingest([real("quiet", s) for s in range(20)])
    for k in range(10):                               # one box floods during an outage
        sp.ingest([real("flood", 100 * k + s) for s in range(100)])
    rows = stored(sp)
    assert len(rows) == 100
    assert sorted(r[1] for r in rows if r[0] == "quiet") == list(range(20))
    flood = sorted(r[1] for r in rows if r[0] == "flood")
    assert flood == list(range(1000 - 80, 1000))      # the flood's newest
    st = {d["device"]: d for d in sp.device_status()}
    assert (st["flood"]["dropped"], st["flood"]["in_spool"], st["quiet"]["in_spool"]) == \
        (920, 80, 20)
    assert sp.counters()["dropped_oldest"] == 920


def test_requeue_keeps_a_conflict(tmp_path):
    sp = Spool(tmp_path / "s.db")
    sp.ingest([real("a", 1)])
    other = real("a", 1, pm25=50)
    sp.ingest([other])
    moved, kept = sp.requeue(None, lambda t, p, s: Accepted("a", 1, other.t_utc_s, p, 0.0))
    assert moved == 0 and kept[0][1].startswith("conflict:")
