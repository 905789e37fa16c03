"""Gateway spool: the SQLite file that holds samples between the broker and InfluxDB.

A sample enters in the ingest thread's transaction (which commits before the broker gets its
PUBACK) and leaves in the writer thread's transaction after InfluxDB answered 2xx (or moves to
dead_letters on a 4xx). Both threads have their own connection; SQLite serialises the writers.

Durability: WAL journal, synchronous=FULL by default, so a commit is on the disk before it
returns (with NORMAL a power cut can lose the last commits, which the broker was already told
we hold). Tables:

  samples       id, device, seq, t_utc_s, payload (the wire bytes as received), received_at
                UNIQUE(device, seq, t_utc_s): a broker redelivery after a crash is ignored.
  dead_letters  id, created_at, source ('ingest' | 'sink'), topic, device, seq, t_utc_s, reason,
                payload, server_answer
  devices       per device: messages (deliveries incl. redeliveries), duplicates, written,
                first/last seen, last sample time
  seq_ranges    per device: the received sequence numbers as merged [start_seq, end_seq] ranges,
                so completeness (expected, missing ranges) is exact without keeping every seq
  counters      persistent gateway counters (dropped_oldest, ...)

Bounded: beyond max_rows the oldest samples are deleted, counted in counters.dropped_oldest and
logged as an alarm. Times are Unix seconds (floats where sub-second matters).
"""

from __future__ import annotations

import bisect
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("envbox.gateway.spool")

ACK_SEQ_LIMIT = 0x3FFFFFFF  # wire.py KIND_ACK: 30-bit varints, hi (excluded) at most 2^30 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    t_utc_s     INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    received_at REAL    NOT NULL,
    UNIQUE (device, seq, t_utc_s)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at    REAL    NOT NULL,
    source        TEXT    NOT NULL,
    topic         TEXT,
    device        TEXT,
    seq           INTEGER,
    t_utc_s       INTEGER,
    reason        TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    server_answer TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device);
CREATE TABLE IF NOT EXISTS devices (
    device       TEXT PRIMARY KEY,
    messages     INTEGER NOT NULL DEFAULT 0,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    written      INTEGER NOT NULL DEFAULT 0,
    first_seen   REAL,
    last_seen    REAL,
    last_t_utc_s INTEGER
);
CREATE TABLE IF NOT EXISTS seq_ranges (
    device    TEXT    NOT NULL,
    start_seq INTEGER NOT NULL,
    end_seq   INTEGER NOT NULL,
    PRIMARY KEY (device, start_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass
class Accepted:
    """A decoded, valid sample to spool."""
    device: str
    seq: int
    t_utc_s: int
    payload: bytes
    received_at: float
    topic: str = ""


@dataclass
class Rejected:
    """A message for the dead letters. `device`/`seq` are known when the payload decoded;
    `count_seq` says whether the seq belongs to `device` (so it counts as arrived)."""
    topic: str
    reason: str
    payload: bytes
    received_at: float
    device: str | None = None
    seq: int | None = None
    t_utc_s: int | None = None
    count_seq: bool = False


@dataclass
class Row:
    id: int
    device: str
    seq: int
    t_utc_s: int
    payload: bytes


@dataclass
class IngestResult:
    spooled: int = 0          # new rows in samples
    duplicates: int = 0       # redeliveries of a seq already received
    dead_lettered: int = 0
    dropped_oldest: int = 0   # rows deleted to stay under max_rows
    dup_devices: set | None = None   # devices that sent a seq already held (they wait for an ack)


class SpoolFull(RuntimeError):
    pass


def _none_removed() -> int:
    return 0


class Spool:
    def __init__(self, path: str | os.PathLike, max_rows: int = 5_000_000,
                 synchronous: str = "FULL", create: bool = True,
                 max_dead_letters: int = 1_000_000):
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise FileNotFoundError(f"spool {self.path} does not exist")
        if create:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_dead_letters = max_dead_letters
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ranges: dict[str, list[list[int]]] = {}   # ingest thread's cache of seq_ranges
        # The writer in another process ([sink] writer_process) deletes rows this object does
        # not see: there on_removed(n) reports them, here removed_elsewhere() sums them.
        self.on_removed = None
        self.removed_elsewhere = _none_removed
        c = self.conn()
        if create:
            c.executescript(SCHEMA)
        self._depth = c.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    # --- connections ------------------------------------------------------------------------

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes
            # the write lock at its start and never fails half-way with SQLITE_BUSY.
            c = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={self.synchronous}")
            c.execute("PRAGMA busy_timeout=60000")
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def _tx(self):
        return _Tx(self.conn())

    @property
    def depth(self) -> int:
        """Rows waiting for InfluxDB (as this process counts them)."""
        with self._lock:
            return max(0, self._depth - self.removed_elsewhere())

    def count_rows(self) -> int:
        return self.conn().execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    # --- ingest -----------------------------------------------------------------------------

    def _load_ranges(self, c, device) -> list[list[int]]:
        r = self._ranges.get(device)
        if r is None:
            r = [list(x) for x in c.execute(
                "SELECT start_seq, end_seq FROM seq_ranges WHERE device=? ORDER BY start_seq",
                (device,))]
            self._ranges[device] = r
        return r

    def _mark_seq(self, c, device, seq, snapshots) -> bool:
        """Add seq to the device's received ranges, in memory (ingest() then stores the ranges
        that changed, once per device and transaction); False if it was already there.
        `snapshots` keeps each touched device's ranges as they were, for that diff."""
        r = self._load_ranges(c, device)
        if device not in snapshots:
            snapshots[device] = {s0: e0 for s0, e0 in r}
        i = bisect.bisect_right(r, [seq, float("inf")]) - 1   # range starting at or before seq
        if i >= 0 and r[i][0] <= seq <= r[i][1]:
            return False
        left = i >= 0 and r[i][1] == seq - 1
        right = i + 1 < len(r) and r[i + 1][0] == seq + 1
        if left and right:
            r[i][1] = r[i + 1][1]
            del r[i + 1]
        elif left:
            r[i][1] = seq
        elif right:
            r[i + 1][0] = seq
        else:
            r.insert(i + 1, [seq, seq])
        return True

    def _write_ranges(self, c, snapshots) -> None:
        """Store the seq ranges that changed since `snapshots` (device -> {start: end})."""
        dels, ups = [], []
        for device, old in snapshots.items():
            new = {s0: e0 for s0, e0 in self._ranges[device]}
            dels.extend((device, s0) for s0 in old if s0 not in new)
            ups.extend((device, s0, e0) for s0, e0 in new.items() if old.get(s0) != e0)
        if dels:
            c.executemany("DELETE FROM seq_ranges WHERE device=? AND start_seq=?", dels)
        if ups:
            c.executemany("INSERT OR REPLACE INTO seq_ranges (device, start_seq, end_seq)"
                          " VALUES (?,?,?)", ups)

    def ingest(self, items: list[Accepted | Rejected]) -> IngestResult:
        """Store one commit group in one transaction; return what happened. When this returns,
        the group is on disk (synchronous=FULL) and the messages may be acknowledged.

        The device rows and seq ranges are updated once per device and group, not per sample:
        a catch-up batch brings up to 60 samples of one box, and per-sample statements were
        most of the spool's cost for them."""
        res = IngestResult()
        c = self.conn()
        snapshots: dict[str, dict[int, int]] = {}
        rows = []
        dead = []
        # device -> [messages, duplicates, first_seen, last_seen, last_t_utc_s]
        touched: dict[str, list] = {}
        dup_devices = res.dup_devices = set()

        def touch(device, at, t_utc_s, dup):
            d = touched.get(device)
            if d is None:
                touched[device] = [1, int(dup), at, at, t_utc_s]
                return
            d[0] += 1
            d[1] += dup
            d[3] = at
            if t_utc_s is not None and (d[4] is None or t_utc_s > d[4]):
                d[4] = t_utc_s

        try:
            with self._tx():
                for it in items:
                    if isinstance(it, Accepted):
                        dup = not self._mark_seq(c, it.device, it.seq, snapshots)
                        rows.append((it.device, it.seq, it.t_utc_s, it.payload, it.received_at))
                        if dup:
                            res.duplicates += 1
                            dup_devices.add(it.device)
                        touch(it.device, it.received_at, it.t_utc_s, dup)
                    else:
                        dup = False
                        if it.device is not None and it.count_seq and it.seq is not None:
                            dup = not self._mark_seq(c, it.device, it.seq, snapshots)
                            if dup:
                                dup_devices.add(it.device)
                        if it.device is not None:
                            touch(it.device, it.received_at, None, dup)
                        dead.append((it.received_at, it.topic, it.device, it.seq, it.t_utc_s,
                                     it.reason, bytes(it.payload)))
                        res.dead_lettered += 1
                before = c.total_changes
                c.executemany(
                    "INSERT OR IGNORE INTO samples (device, seq, t_utc_s, payload, received_at)"
                    " VALUES (?,?,?,?,?)", rows)
                added = res.spooled = c.total_changes - before   # UNIQUE copies are ignored
                self._write_ranges(c, snapshots)
                c.executemany(
                    "INSERT INTO devices (device, messages, duplicates, first_seen, last_seen,"
                    " last_t_utc_s) VALUES (?,?,?,?,?,?) ON CONFLICT(device) DO UPDATE SET"
                    " messages = messages + excluded.messages,"
                    " duplicates = duplicates + excluded.duplicates,"
                    " last_seen = excluded.last_seen,"
                    " last_t_utc_s = max(coalesce(last_t_utc_s, excluded.last_t_utc_s),"
                    "                    coalesce(excluded.last_t_utc_s, last_t_utc_s))",
                    [(dev, *v) for dev, v in touched.items()])
                if dead:
                    c.executemany(
                        "INSERT INTO dead_letters (created_at, source, topic, device, seq,"
                        " t_utc_s, reason, payload) VALUES (?, 'ingest', ?,?,?,?,?,?)", dead)
                with self._lock:
                    depth = self._depth - self.removed_elsewhere() + added
                excess = depth - self.max_rows
                if excess > 0:
                    c.execute("DELETE FROM samples WHERE id IN"
                              " (SELECT id FROM samples ORDER BY id LIMIT ?)", (excess,))
                    self._bump(c, "dropped_oldest", excess)
                    res.dropped_oldest = excess
                    added -= excess
                if res.dead_lettered:
                    self._bump(c, "dead_lettered_ingest", res.dead_lettered)
                    self._bound_dead_letters(c)
        except BaseException:
            self._ranges.clear()   # the cache may hold the rolled-back changes
            raise
        with self._lock:
            self._depth += added
        if res.dropped_oldest:
            log.error("ALARM spool full (max_rows=%d): dropped the %d oldest samples; "
                      "InfluxDB has been unreachable too long or max_rows is too small",
                      self.max_rows, res.dropped_oldest)
        return res

    def held_ranges(self, device: str, seqs) -> list[tuple[int, int]]:
        """The committed seq ranges of `device` that contain any of `seqs`, as [(lo, hi)] with
        hi excluded (wire.encode_ack's form), oldest first. Seqs at or above
        2^30 - 1 cannot be acknowledged (the ack's varints are 30 bits) and are left out. Call it
        from the ingest thread after ingest() returned: its cache then holds committed ranges."""
        r = self._load_ranges(self.conn(), device)
        picked: dict[int, tuple[int, int]] = {}
        for seq in seqs:
            i = bisect.bisect_right(r, [seq, float("inf")]) - 1
            if i >= 0 and r[i][0] <= seq <= r[i][1] and i not in picked:
                lo, hi = r[i][0], min(r[i][1] + 1, ACK_SEQ_LIMIT)
                if lo < hi:
                    picked[i] = (lo, hi)
        return [picked[i] for i in sorted(picked)]

    def held_ranges_newest(self, device: str, limit: int = 16) -> list[tuple[int, int]]:
        """The newest `limit` committed seq ranges of `device`, [(lo, hi)] with hi excluded."""
        r = self._load_ranges(self.conn(), device)
        out = []
        for lo, hi in r[-limit:]:
            hi = min(hi + 1, ACK_SEQ_LIMIT)
            if lo < hi:
                out.append((lo, hi))
        return out

    @staticmethod
    def _bump(c, name, n):
        c.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                  " DO UPDATE SET value = value + excluded.value", (name, n))

    # --- writer -----------------------------------------------------------------------------

    def fetch(self, limit: int, after_id: int = 0) -> list[Row]:
        """Up to `limit` rows with an id above `after_id`, oldest first (the writer passes the
        last id it has in flight, to prepare the next write while one is on the way)."""
        return [Row(*r) for r in self.conn().execute(
            "SELECT id, device, seq, t_utc_s, payload FROM samples WHERE id > ? ORDER BY id"
            " LIMIT ?", (after_id, limit))]

    def delete_written(self, rows: list[Row]) -> int:
        """The server answered 2xx for `rows`: remove them and count them as written."""
        c = self.conn()
        per_dev: dict[str, int] = {}
        for r in rows:
            per_dev[r.device] = per_dev.get(r.device, 0) + 1
        with self._tx():
            before = c.total_changes
            c.executemany("DELETE FROM samples WHERE id=?", [(r.id,) for r in rows])
            # fewer than len(rows) if drop-oldest removed some while they were being written
            n = c.total_changes - before
            c.executemany("UPDATE devices SET written = written + ? WHERE device = ?",
                          [(k_n, d) for d, k_n in per_dev.items()])
            self._bump(c, "written", len(rows))
        self._sub_depth(n)
        return n

    def dead_letter_rows(self, rows: list[Row], reason: str, server_answer: str) -> None:
        """The server refused `rows` (4xx): move them to dead_letters with its answer."""
        c = self.conn()
        now = time.time()
        with self._tx():
            c.executemany(
                "INSERT INTO dead_letters (created_at, source, topic, device, seq, t_utc_s, reason,"
                " payload, server_answer) VALUES (?, 'sink', NULL, ?,?,?,?,?,?)",
                [(now, r.device, r.seq, r.t_utc_s, reason, r.payload, server_answer) for r in rows])
            before = c.total_changes
            c.executemany("DELETE FROM samples WHERE id=?", [(r.id,) for r in rows])
            n = c.total_changes - before
            self._bump(c, "dead_lettered_sink", len(rows))
            self._bound_dead_letters(c)
        self._sub_depth(n)

    def _bound_dead_letters(self, c) -> None:
        # A flood of garbage must not fill the disk: keep the newest max_dead_letters.
        excess = c.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] - self.max_dead_letters
        if excess > 0:
            c.execute("DELETE FROM dead_letters WHERE id IN"
                      " (SELECT id FROM dead_letters ORDER BY id LIMIT ?)", (excess,))
            self._bump(c, "dead_letters_dropped", excess)
            log.error("ALARM dead letters full (max_dead_letters=%d): dropped the %d oldest",
                      self.max_dead_letters, excess)

    def _sub_depth(self, n):
        with self._lock:
            self._depth = max(0, self._depth - n)
        if self.on_removed is not None and n:
            self.on_removed(n)

    # --- reading (status, CLI) --------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return dict(self.conn().execute("SELECT name, value FROM counters"))

    def device_status(self) -> list[dict]:
        """Per device: expected/received/missing (with seq ranges), duplicates, dead letters,
        rows still in the spool, rows written."""
        c = self.conn()
        out = []
        dl = dict(c.execute("SELECT device, COUNT(*) FROM dead_letters WHERE device IS NOT NULL"
                            " GROUP BY device"))
        spooled = dict(c.execute("SELECT device, COUNT(*) FROM samples GROUP BY device"))
        for dev, messages, dups, written, first, last, last_t in c.execute(
                "SELECT device, messages, duplicates, written, first_seen, last_seen, last_t_utc_s"
                " FROM devices ORDER BY device").fetchall():
            ranges = c.execute("SELECT start_seq, end_seq FROM seq_ranges WHERE device=?"
                               " ORDER BY start_seq", (dev,)).fetchall()
            received = sum(e - s + 1 for s, e in ranges)
            if ranges:
                first_seq, last_seq = ranges[0][0], ranges[-1][1]
                expected = last_seq - first_seq + 1
            else:
                first_seq = last_seq = None
                expected = 0
            missing = [(ranges[k][1] + 1, ranges[k + 1][0] - 1) for k in range(len(ranges) - 1)]
            out.append({
                "device": dev, "first_seq": first_seq, "last_seq": last_seq,
                "expected": expected, "received": received, "missing": expected - received,
                "missing_ranges": missing, "duplicates": dups, "messages": messages,
                "dead_lettered": dl.get(dev, 0), "in_spool": spooled.get(dev, 0),
                "written": written, "first_seen": first, "last_seen": last,
                "last_t_utc_s": last_t,
            })
        return out

    def dead_letters(self, limit: int = 100, source: str | None = None) -> list[dict]:
        q = ("SELECT id, created_at, source, topic, device, seq, t_utc_s, reason, payload,"
             " server_answer FROM dead_letters")
        args: tuple = ()
        if source:
            q += " WHERE source = ?"
            args = (source,)
        q += " ORDER BY id LIMIT ?"
        cols = ("id", "created_at", "source", "topic", "device", "seq", "t_utc_s", "reason",
                "payload", "server_answer")
        return [dict(zip(cols, r)) for r in self.conn().execute(q, args + (limit,))]

    def dead_letter_count(self) -> int:
        return self.conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

    def requeue(self, ids: list[int] | None, check) -> tuple[int, list[tuple[int, str]]]:
        """Move dead letters (all when ids is None) back into samples if `check(topic, payload,
        source)` now accepts them (returns an Accepted, or a reason string). Returns (moved,
        [(id, reason kept)])."""
        c = self.conn()
        moved, kept = 0, []
        with self._tx():
            q = "SELECT id, source, topic, payload, device FROM dead_letters"
            rows = (c.execute(q + " ORDER BY id").fetchall() if ids is None else
                    [r for i in ids for r in c.execute(q + " WHERE id=?", (i,))])
            for dl_id, source, topic, payload, device in rows:
                verdict = check(topic or f"envbox/v1/{device}/data", payload, source)
                if isinstance(verdict, str):
                    kept.append((dl_id, verdict))
                    continue
                cur = c.execute(
                    "INSERT OR IGNORE INTO samples (device, seq, t_utc_s, payload, received_at)"
                    " VALUES (?,?,?,?,?)",
                    (verdict.device, verdict.seq, verdict.t_utc_s, verdict.payload, time.time()))
                c.execute("DELETE FROM dead_letters WHERE id=?", (dl_id,))
                moved += cur.rowcount
        with self._lock:
            self._depth += moved
        return moved, kept


class _Tx:
    def __init__(self, c):
        self.c = c

    def __enter__(self):
        self.c.execute("BEGIN IMMEDIATE")
        return self.c

    def __exit__(self, et, ev, tb):
        if et is None:
            self.c.execute("COMMIT")
        else:
            try:
                self.c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        return False
