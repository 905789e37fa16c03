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
