"""Gateway spool: the SQLite file that holds samples between the broker and InfluxDB.

A sample enters in the ingest thread's transaction (which commits before the broker gets its
PUBACK) and leaves in the writer's transaction after InfluxDB answered 2xx (or moves to
dead_letters on a 4xx). Both have their own connection; SQLite serialises the writers.

Durability: WAL journal, synchronous=FULL by default, so a commit is on the disk before it
returns (with NORMAL a power cut can lose the last commits, which the broker was already told
we hold). Tables:

  samples       id, device, seq, t_utc_s, payload (the wire bytes as received), received_at
                UNIQUE(device, seq, t_utc_s): a broker redelivery after a crash is ignored.
  history       per stored sample of the last conflict_window_s: device id, seq, time and a
                digest of its content, so a sample that comes again with the same seq or time
                and other content is refused as a conflict (the stored point is never rewritten)
                and an identical one is a duplicate, also after it was written to InfluxDB
  device_ids    device -> a small integer (history's key)
  dead_letters  id, created_at, source ('ingest' | 'sink'), topic, device, seq, t_utc_s, reason,
                payload (at most dead_letter_payload_bytes of it), payload_len (the original
                length), server_answer
  devices       per device: messages (deliveries incl. redeliveries), duplicates, written,
                rows in the spool, first/last seen, last sample time, and the gap accounting's
                floor (below)
  seq_ranges    per device: the received sequence numbers as merged [start_seq, end_seq] ranges,
                at most max_seq_ranges per device (the newest; the older ones are folded into a
                count), so completeness is exact for recent seqs and memory is constant per
                device whatever the seq pattern
  counters      persistent gateway counters (dropped_oldest, dead_letter_bytes, ...)

Bounded: beyond max_rows the oldest samples of the device holding the most rows are deleted
(one box's flood never evicts another box's rows), counted in counters.dropped_oldest and
logged as an alarm; dead letters are bounded in count and in bytes. Times are Unix seconds
(floats where sub-second matters).
"""

from __future__ import annotations

import bisect
import logging
import os
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .ratelog import RateLimited

log = logging.getLogger("envbox.gateway.spool")
_alarm = RateLimited(log, per_s=60.0, burst=1, level=logging.ERROR)

ACK_SEQ_LIMIT = 0x3FFFFFFF  # wire.py KIND_ACK: 30-bit varints, hi (excluded) at most 2^30 - 1
_KIND_SAMPLE = 0x01

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
CREATE TABLE IF NOT EXISTS device_ids (
    id     INTEGER PRIMARY KEY,
    device TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS history (
    dev     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    t_utc_s INTEGER NOT NULL,
    digest  INTEGER NOT NULL,
    PRIMARY KEY (dev, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS history_time ON history (dev, t_utc_s);
"""

# Columns added since the first release: (table, column, declaration, fill for existing rows).
MIGRATIONS = (
    ("dead_letters", "payload_len", "INTEGER", "length(payload)"),
    ("devices", "in_spool", "INTEGER NOT NULL DEFAULT 0",
     "(SELECT COUNT(*) FROM samples WHERE samples.device = devices.device)"),
    ("devices", "seq_floor", "INTEGER", None),       # seqs below it may be in folded ranges
    ("devices", "seq_folded", "INTEGER NOT NULL DEFAULT 0", None),   # seqs in folded ranges
    ("devices", "first_seq", "INTEGER", None),
    ("devices", "dropped", "INTEGER NOT NULL DEFAULT 0", None),     # by drop-oldest
)


def _iso(t) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def digest(payload: bytes) -> int:
    """What makes two copies of a sample the same sample: its bytes (a box resends a journaled
    sample byte for byte; no flag records how it travelled: 0x04, once FLAG_REPLAYED, is retired
    and never set)."""
    return zlib.crc32(payload)


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
    conflicts: int = 0        # samples refused: their seq or time was stored with other content
    dup_devices: set | None = None   # devices that sent a seq already held (they wait for an ack)
    rejected: list | None = None     # the Rejected items written as dead letters, conflicts too


class SpoolFull(RuntimeError):
    pass


def _none_removed() -> int:
    return 0


class Spool:
    def __init__(self, path: str | os.PathLike, max_rows: int = 5_000_000,
                 synchronous: str = "FULL", create: bool = True,
                 max_dead_letters: int = 1_000_000,
                 max_dead_letter_bytes: int = 64 * 1024 * 1024,
                 dead_letter_payload_bytes: int = 4096,
                 max_seq_ranges: int = 64,
                 conflict_window_s: float = 15 * 86400):
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise FileNotFoundError(f"spool {self.path} does not exist")
        if create:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_dead_letters = max_dead_letters
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.dead_letter_payload_bytes = dead_letter_payload_bytes
        self.max_seq_ranges = max(2, max_seq_ranges)
        self.conflict_window_s = conflict_window_s
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._lock = threading.Lock()
        # The ingest thread's caches (only it changes these tables' rows for a device):
        self._ranges: dict[str, list[list[int]]] = {}   # seq_ranges
        self._fold: dict[str, list] = {}     # device -> [seq_floor or None, seq_folded, first_seq]
        self._dev_ids: dict[str, int] = {}
        self._max_t: dict[int, int] = {}     # dev id -> latest t_utc_s in history (-1: none)
        self._pruned: dict[int, float] = {}  # dev id -> time.monotonic() of its last pruning
        # The writer in another process ([sink] writer_process) deletes rows this object does
        # not see: there on_removed(n) reports them, here removed_elsewhere() sums them.
        self.on_removed = None
        self.removed_elsewhere = _none_removed
        c = self.conn()
        # also for create=False (the CLI on an existing file): an older spool gains the new
        # tables and columns here
        c.executescript(SCHEMA)
        self._migrate(c)
        self._depth = c.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        self._preload(c)

    def _reload_caches(self, c) -> None:
        """After a rolled-back transaction: the caches may hold its changes, read them again."""
        self._ranges.clear()
        self._fold.clear()
        self._max_t.clear()
        self._preload(c)

    def _preload(self, c) -> None:
        """One query each for what ingest needs of every known box (fleet-sized): a box seen
        for the first time by this process then costs no query at all if it is new, and only
        its seq ranges and latest time if it is not."""
        self._dev_ids = dict(c.execute("SELECT device, id FROM device_ids"))
        self._known = {d: [f, n, s] for d, f, n, s in c.execute(
            "SELECT device, seq_floor, seq_folded, first_seq FROM devices")}

    @staticmethod
    def _migrate(c) -> None:
        for table, col, decl, fill in MIGRATIONS:
            have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            if col not in have:
                with _Tx(c):
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
                    if fill:
                        c.execute(f"UPDATE {table} SET {col} = {fill}")

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

    # --- gap accounting (seq ranges), bounded per device --------------------------------------

    def _load_ranges(self, c, device) -> list[list[int]]:
        r = self._ranges.get(device)
        if r is None:
            fold = self._known.pop(device, None)
            if fold is None:                 # a box this spool has never seen
                r = []
                fold = [None, 0, None]
            else:
                r = [list(x) for x in c.execute(
                    "SELECT start_seq, end_seq FROM seq_ranges WHERE device=?"
                    " ORDER BY start_seq", (device,))]
            self._ranges[device] = r
            self._fold[device] = fold
        return r

    def _mark_seq(self, c, device, seq, snapshots) -> bool | None:
        """Add seq to the device's received ranges, in memory (ingest() then stores the ranges
        that changed, once per device and transaction); False if it was already there, None if
        it is below the floor of folded ranges (whether it came before is not known here: the
        history knows). `snapshots` keeps each touched device's ranges as they were, for that
        diff. At most max_seq_ranges ranges are kept: beyond, the oldest is folded into a count
        (seq_folded) and the floor rises above it, so a box that skips every other seq costs
        the same memory and commit time as one that never skips."""
        r = self._load_ranges(c, device)
        fold = self._fold[device]
        if device not in snapshots:
            snapshots[device] = ({s0: e0 for s0, e0 in r}, tuple(fold))
        if fold[2] is None or seq < fold[2]:
            fold[2] = seq                               # first_seq
        if fold[0] is not None and seq < fold[0]:
            return None
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
            if len(r) > self.max_seq_ranges:
                s0, e0 = r.pop(0)
                fold[0] = e0 + 1
                fold[1] += e0 - s0 + 1
        return True

    def _write_ranges(self, c, snapshots) -> None:
        """Store the seq ranges (and fold state) that changed since `snapshots`."""
        dels, ups, folds = [], [], []
        for device, (old, old_fold) in snapshots.items():
            new = {s0: e0 for s0, e0 in self._ranges[device]}
            dels.extend((device, s0) for s0 in old if s0 not in new)
            ups.extend((device, s0, e0) for s0, e0 in new.items() if old.get(s0) != e0)
            f = self._fold[device]
            if tuple(f) != old_fold:
                folds.append((device, f[0], f[1], f[2]))
        if dels:
            c.executemany("DELETE FROM seq_ranges WHERE device=? AND start_seq=?", dels)
        if ups:
            c.executemany("INSERT OR REPLACE INTO seq_ranges (device, start_seq, end_seq)"
                          " VALUES (?,?,?)", ups)
        if folds:
            c.executemany("INSERT INTO devices (device, seq_floor, seq_folded, first_seq)"
                          " VALUES (?,?,?,?) ON CONFLICT(device) DO UPDATE SET"
                          " seq_floor = excluded.seq_floor, seq_folded = excluded.seq_folded,"
                          " first_seq = excluded.first_seq", folds)

    # --- history: conflicts and identical copies --------------------------------------------

    def _dev_id(self, c, device) -> int:
        i = self._dev_ids.get(device)
        if i is None:
            # not preloaded: a new box (device_ids is only written here, by ingest)
            i = c.execute("INSERT INTO device_ids (device) VALUES (?)", (device,)).lastrowid
            self._dev_ids[device] = i
            self._max_t[i] = -1
        return i

    def _check_history(self, c, accepted, now_s):
        """Per Accepted item: "new", "dup" (this very sample is stored: same seq, time and
        content) or a conflict reason (its seq, or its time, is stored with other content).
        Only samples younger than conflict_window_s are checked and remembered. Lookups are
        skipped where the in-memory state proves a sample new (a seq never received and a time
        after the device's latest), which is every live sample; catch-up and redeliveries are
        looked up with one query per device and group."""
        out = [None] * len(accepted)
        if self.conflict_window_s <= 0:
            return out, []
        horizon = now_s - self.conflict_window_s
        by_dev: dict[str, list[int]] = {}
        for k, it in enumerate(accepted):
            if it.t_utc_s >= horizon:
                by_dev.setdefault(it.device, []).append(k)
        new_rows = []
        for device, ks in by_dev.items():
            dev = self._dev_id(c, device)
            r = self._load_ranges(c, device)
            floor = self._fold[device][0]
            max_t = self._max_t.get(dev)
            if max_t is None:
                max_t = c.execute("SELECT max(t_utc_s) FROM history WHERE dev=?",
                                  (dev,)).fetchone()[0]
                max_t = -1 if max_t is None else max_t
            want_seq, want_t = [], []
            for k in ks:
                it = accepted[k]
                seq = it.seq
                if floor is not None and seq < floor:
                    want_seq.append(seq)
                else:
                    i = bisect.bisect_right(r, [seq, float("inf")]) - 1
                    if i >= 0 and r[i][0] <= seq <= r[i][1]:
                        want_seq.append(seq)
                if it.t_utc_s <= max_t:
                    want_t.append(it.t_utc_s)
            if not want_seq and not want_t and len(ks) == 1:
                # the live case: a sample beyond everything known of its box
                it = accepted[ks[0]]
                out[ks[0]] = "new"
                new_rows.append((dev, it.seq, it.t_utc_s, digest(it.payload)))
                self._max_t[dev] = it.t_utc_s if it.t_utc_s > max_t else max_t
                continue
            by_seq = dict(self._lookup(c, "seq", "t_utc_s", dev, want_seq)) if want_seq else {}
            by_t = dict(self._lookup(c, "t_utc_s", "seq", dev, want_t)) if want_t else {}
            for k in ks:
                it = accepted[k]
                d = digest(it.payload)
                prev = by_seq.get(it.seq)
                if prev is not None:
                    if prev == (it.t_utc_s, d):
                        out[k] = "dup"
                    elif prev[0] != it.t_utc_s:
                        out[k] = (f"conflict: seq {it.seq} is stored with time "
                                  f"{_iso(prev[0])}, this copy says {_iso(it.t_utc_s)}")
                    else:
                        out[k] = f"conflict: seq {it.seq} is stored with other values"
                    continue
                prev = by_t.get(it.t_utc_s)
                if prev is not None:
                    out[k] = (f"conflict: time {_iso(it.t_utc_s)} is stored as seq {prev[0]}, "
                              f"this sample is seq {it.seq}")
                    continue
                out[k] = "new"
                # later samples of this group see this one
                by_seq[it.seq] = (it.t_utc_s, d)
                by_t[it.t_utc_s] = (it.seq, d)
                new_rows.append((dev, it.seq, it.t_utc_s, d))
                if it.t_utc_s > max_t:
                    max_t = it.t_utc_s
            self._max_t[dev] = max_t
        return out, new_rows

    @staticmethod
    def _lookup(c, key, other, dev, values):
        """(value, (other, digest)) of history rows of `dev` whose `key` is in `values`: one
        index range scan from the smallest to the largest (a group's samples of one box are a
        short run of seqs and times; a catch-up batch filling a gap usually finds nothing)."""
        want = set(values)
        q = (f"SELECT {key}, {other}, digest FROM history WHERE dev=? AND {key} BETWEEN ? AND ?")
        for a, b, d in c.execute(q, (dev, min(want), max(want))):
            if a in want:
                yield a, (b, d)

    def _prune_history(self, c, devices, now_s) -> None:
        """Forget what left the conflict window: a device's rows older than conflict_window_s,
        at most every 10 minutes per device (amortised over the commits of live boxes), the
        first time 10 minutes after this process first saw it (a gateway starting with a large
        fleet would otherwise prune every box in its first commits)."""
        if self.conflict_window_s <= 0:
            return
        mono = time.monotonic()
        horizon = now_s - self.conflict_window_s
        for device in devices:
            dev = self._dev_ids.get(device)
            if dev is None:
                continue
            last = self._pruned.get(dev)
            if last is None:          # first seen by this process: in 10 minutes
                self._pruned[dev] = mono
                continue
            if mono - last < 600:
                continue
            self._pruned[dev] = mono
            c.execute("DELETE FROM history WHERE dev=? AND t_utc_s < ?", (dev, horizon))

    # --- ingest -----------------------------------------------------------------------------

    def ingest(self, items: list[Accepted | Rejected], now_s: float | None = None
               ) -> IngestResult:
        """Store one commit group in one transaction; return what happened. When this returns,
        the group is on disk (synchronous=FULL) and the messages may be acknowledged.

        Each Accepted sample is checked against the history first: an identical copy of a
        stored sample is a duplicate (not stored again, not written again), one whose seq or
        time is stored with other content a conflict (a dead letter; the stored point stays).
        The device rows and seq ranges are updated once per device and group, not per sample:
        a catch-up batch brings up to 60 samples of one box, and per-sample statements were
        most of the spool's cost for them."""
        res = IngestResult()
        now_s = time.time() if now_s is None else now_s
        c = self.conn()
        snapshots: dict[str, tuple] = {}
        rows = []
        dead = []
        rejected = res.rejected = []
        # device -> [messages, duplicates, first_seen, last_seen, last_t_utc_s, added]
        touched: dict[str, list] = {}
        dup_devices = res.dup_devices = set()

        def touch(device, at, t_utc_s, dup, added=0):
            d = touched.get(device)
            if d is None:
                touched[device] = [1, int(dup), at, at, t_utc_s, added]
                return
            d[0] += 1
            d[1] += dup
            d[3] = at
            d[5] += added
            if t_utc_s is not None and (d[4] is None or t_utc_s > d[4]):
                d[4] = t_utc_s

        def dead_letter(it):
            p = bytes(it.payload)
            dead.append((it.received_at, it.topic, it.device, it.seq, it.t_utc_s, it.reason,
                         p[:self.dead_letter_payload_bytes], len(p)))
            rejected.append(it)
            res.dead_lettered += 1

        accepted = [it for it in items if type(it) is Accepted]
        try:
            with self._tx():
                verdicts, history_rows = self._check_history(c, accepted, now_s)
                k = 0
                for it in items:
                    if type(it) is Accepted:
                        v = verdicts[k]
                        k += 1
                        mark = self._mark_seq(c, it.device, it.seq, snapshots)
                        if v is None:            # outside the window: the seq ranges decide
                            dup = mark is False
                        elif v == "new" or v == "dup":
                            dup = v == "dup"
                        else:                    # a conflict: a duplicate if its seq was held
                            dup = (mark is False if mark is not None
                                   else v.startswith("conflict: seq"))
                        if mark is None and not dup:
                            self._fold[it.device][1] += 1   # below the floor, and new
                        if dup:
                            res.duplicates += 1
                            dup_devices.add(it.device)
                        if v is not None and v not in ("new", "dup"):
                            res.conflicts += 1
                            dead_letter(Rejected(it.topic, v, it.payload, it.received_at,
                                                 device=it.device, seq=it.seq,
                                                 t_utc_s=it.t_utc_s, count_seq=True))
                            touch(it.device, it.received_at, None, dup)
                            continue
                        if v == "dup":
                            touch(it.device, it.received_at, it.t_utc_s, dup)
                            continue
                        rows.append((it.device, it.seq, it.t_utc_s, it.payload, it.received_at))
                        touch(it.device, it.received_at, it.t_utc_s, dup)
                    else:
                        dup = False
                        if it.device is not None and it.count_seq and it.seq is not None:
                            dup = self._mark_seq(c, it.device, it.seq, snapshots) is False
                            if dup:
                                dup_devices.add(it.device)
                        if it.device is not None:
                            touch(it.device, it.received_at, None, dup)
                        dead_letter(it)
                before = c.total_changes
                c.executemany(
                    "INSERT OR IGNORE INTO samples (device, seq, t_utc_s, payload, received_at)"
                    " VALUES (?,?,?,?,?)", rows)
                added = res.spooled = c.total_changes - before   # UNIQUE copies are ignored
                if added == len(rows):
                    for dev, _seq, _t, _p, _a in rows:
                        touched[dev][5] += 1
                else:
                    # copies of a sample still waiting were ignored (possible outside the
                    # conflict window only): count those devices' rows again below
                    for dev, _seq, _t, _p, _a in rows:
                        touched[dev][5] = None
                if history_rows:
                    c.executemany("INSERT OR IGNORE INTO history (dev, seq, t_utc_s, digest)"
                                  " VALUES (?,?,?,?)", history_rows)
                self._write_ranges(c, snapshots)
                c.executemany(
                    "INSERT INTO devices (device, messages, duplicates, first_seen, last_seen,"
                    " last_t_utc_s, in_spool) VALUES (?,?,?,?,?,?,?) ON CONFLICT(device) DO"
                    " UPDATE SET messages = messages + excluded.messages,"
                    " duplicates = duplicates + excluded.duplicates,"
                    " last_seen = excluded.last_seen,"
                    " in_spool = in_spool + excluded.in_spool,"
                    " last_t_utc_s = max(coalesce(last_t_utc_s, excluded.last_t_utc_s),"
                    "                    coalesce(excluded.last_t_utc_s, last_t_utc_s))",
                    [(dev, *v[:5], v[5] or 0) for dev, v in touched.items()])
                recount = [dev for dev, v in touched.items() if v[5] is None]
                if recount:
                    c.executemany("UPDATE devices SET in_spool = (SELECT COUNT(*) FROM samples"
                                  " WHERE samples.device = devices.device) WHERE device = ?",
                                  [(d,) for d in recount])
                if dead:
                    self._insert_dead(c, dead, "ingest")       # and bound the table
                with self._lock:
                    depth = self._depth - self.removed_elsewhere() + added
                excess = depth - self.max_rows
                if excess > 0:
                    res.dropped_oldest = self._drop_fairly(c, excess)
                    added -= res.dropped_oldest
                if res.dead_lettered:
                    self._bump(c, "dead_lettered_ingest", res.dead_lettered)
                if res.conflicts:
                    self._bump(c, "conflicts", res.conflicts)
                self._prune_history(c, touched, now_s)
        except BaseException:
            self._reload_caches(c)
            raise
        with self._lock:
            self._depth += added
        if res.dropped_oldest:
            _alarm("spool full", "ALARM spool full (max_rows=%d): dropped the %d oldest samples "
                   "of the boxes holding the most rows; InfluxDB has been unreachable too long "
                   "or max_rows is too small", self.max_rows, res.dropped_oldest)
        return res

    def _drop_fairly(self, c, excess: int) -> int:
        """Delete `excess` rows: each time the oldest (lowest seq) of the device holding the
        most rows, down to the next device's count, so one box flooding the spool during an
        outage never evicts another box's rows while it holds more than them."""
        dropped = 0
        per_dev = []
        while dropped < excess:
            top = c.execute("SELECT device, in_spool FROM devices WHERE in_spool > 0"
                            " ORDER BY in_spool DESC LIMIT 2").fetchall()
            if not top:
                break
            dev, n = top[0]
            nxt = top[1][1] if len(top) > 1 else 0
            k = min(excess - dropped, max(1, n - nxt))
            before = c.total_changes
            c.execute("DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE device=?"
                      " ORDER BY seq LIMIT ?)", (dev, k))
            got = c.total_changes - before
            c.execute("UPDATE devices SET in_spool = max(0, in_spool - ?) WHERE device=?",
                      (got if got else n, dev))
            dropped += got
            per_dev.append((dev, got))
        if dropped:
            self._bump(c, "dropped_oldest", dropped)
            for dev, got in per_dev:
                if got:
                    c.execute("UPDATE devices SET dropped = dropped + ? WHERE device = ?",
                              (got, dev))
        return dropped

    def held_ranges(self, device: str, seqs) -> list[tuple[int, int]]:
        """The committed seq ranges of `device` that contain any of `seqs` (each of which was
        committed), as [(lo, hi)] with hi excluded (wire.encode_ack's form), oldest first; a
        seq below the floor of folded ranges as a range of its own. Seqs at or above
        2^30 - 1 cannot be acknowledged (the ack's varints are 30 bits) and are left out. Call
        it from the ingest thread after ingest() returned: its cache then holds committed
        ranges."""
        r = self._load_ranges(self.conn(), device)
        picked: dict[int, tuple[int, int]] = {}
        for seq in seqs:
            i = bisect.bisect_right(r, [seq, float("inf")]) - 1
            if i >= 0 and r[i][0] <= seq <= r[i][1]:
                lo, hi = r[i][0], r[i][1] + 1
            else:
                lo, hi = seq, seq + 1
            if lo not in picked or picked[lo][1] < hi:
                picked[lo] = (lo, hi)
        out = []
        for lo in sorted(picked):
            lo, hi = picked[lo]
            hi = min(hi, ACK_SEQ_LIMIT)
            if lo >= hi:
                continue
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

    def held_ranges_newest(self, device: str, limit: int = 16) -> list[tuple[int, int]]:
        """The newest `limit` committed seq ranges of `device`, [(lo, hi)] with hi excluded."""
        r = self._load_ranges(self.conn(), device)
        out = []
        for lo, hi in r[-limit:]:
            hi = min(hi + 1, ACK_SEQ_LIMIT)
            if lo < hi:
                out.append((lo, hi))
        return out

    # --- the MQTT session (ingest) ------------------------------------------------------------

    def record_mqtt_session(self) -> None:
        """Remember that the gateway's client id has had a session at the broker (the counter
        mqtt_connects), so that a later start that finds none can say so. One statement, its
        own transaction (called from paho's network thread, outside any commit group)."""
        self._bump(self.conn(), "mqtt_connects", 1)

    def had_mqtt_session(self) -> bool:
        """Whether record_mqtt_session() was ever called on this spool."""
        row = self.conn().execute(
            "SELECT value FROM counters WHERE name = 'mqtt_connects'").fetchone()
        return bool(row and row[0])

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
            n = c.total_changes - before
            if n == len(rows):
                c.executemany("UPDATE devices SET written = written + ?,"
                              " in_spool = max(0, in_spool - ?) WHERE device = ?",
                              [(k, k, d) for d, k in per_dev.items()])
            else:
                # drop-oldest removed some while they were being written: count those boxes'
                # rows again (rare; per row counting would cost every write)
                c.executemany("UPDATE devices SET written = written + ?, in_spool = (SELECT"
                              " COUNT(*) FROM samples WHERE samples.device = devices.device)"
                              " WHERE device = ?", [(k, d) for d, k in per_dev.items()])
            self._bump(c, "written", len(rows))
        self._sub_depth(n)
        return n

    def dead_letter_rows(self, rows: list[Row], reason: str, server_answer: str) -> None:
        """The server refused `rows` (4xx): move them to dead_letters with its answer."""
        c = self.conn()
        now = time.time()
        n = 0
        with self._tx():
            self._insert_dead(c, [(now, None, r.device, r.seq, r.t_utc_s, reason,
                                   r.payload[:self.dead_letter_payload_bytes], len(r.payload),
                                   server_answer) for r in rows], "sink")
            for r in rows:
                before = c.total_changes
                c.execute("DELETE FROM samples WHERE id=?", (r.id,))
                gone = c.total_changes - before
                n += gone
                if gone:
                    c.execute("UPDATE devices SET in_spool = max(0, in_spool - 1)"
                              " WHERE device = ?", (r.device,))
            self._bump(c, "dead_lettered_sink", len(rows))
        self._sub_depth(n)

    # What a dead letter costs, as counted against max_dead_letter_bytes (the same expression
    # when it is stored and when it is removed, so the running total stays exact).
    _DL_BYTES = ("(length(payload) + coalesce(length(CAST(reason AS BLOB)), 0)"
                 " + coalesce(length(CAST(topic AS BLOB)), 0)"
                 " + coalesce(length(CAST(server_answer AS BLOB)), 0) + 64)")

    def _insert_dead(self, c, dead, source: str) -> None:
        """Store dead letters (created_at, topic, device, seq, t_utc_s, reason, payload head,
        payload length[, server answer]) and keep the table within its bounds."""
        if not dead:
            return
        self._dl_totals(c)       # counts the table once if the spool predates the counters
        last = c.execute("SELECT max(id) FROM dead_letters").fetchone()[0] or 0
        rows = [d if len(d) == 9 else (*d, None) for d in dead]
        c.executemany(
            "INSERT INTO dead_letters (created_at, source, topic, device, seq, t_utc_s, reason,"
            f" payload, payload_len, server_answer) VALUES (?, '{source}', ?,?,?,?,?,?,?,?)",
            rows)
        added = c.execute(f"SELECT COUNT(*), coalesce(SUM({self._DL_BYTES}), 0)"
                          " FROM dead_letters WHERE id > ?", (last,)).fetchone()
        self._bump(c, "dead_letter_rows", added[0])
        self._bump(c, "dead_letter_bytes", added[1])
        self._bound_dead_letters(c)

    def _dl_totals(self, c) -> tuple[int, int]:
        got = dict(c.execute("SELECT name, value FROM counters WHERE name IN"
                             " ('dead_letter_rows', 'dead_letter_bytes')"))
        if "dead_letter_rows" not in got:       # a spool from before these counters
            n, b = c.execute(f"SELECT COUNT(*), coalesce(SUM({self._DL_BYTES}), 0)"
                             " FROM dead_letters").fetchone()
            self._bump(c, "dead_letter_rows", n)
            self._bump(c, "dead_letter_bytes", b)
            return n, b
        return got["dead_letter_rows"], got.get("dead_letter_bytes", 0)

    def _bound_dead_letters(self, c) -> None:
        # A flood of garbage must not fill the disk: keep the newest max_dead_letters, and at
        # most max_dead_letter_bytes (payloads are stored truncated to
        # dead_letter_payload_bytes, with their length).
        n, b = self._dl_totals(c)
        need_n, need_b = n - self.max_dead_letters, b - self.max_dead_letter_bytes
        if need_n <= 0 and need_b <= 0:
            return
        dropped = freed = 0
        last = None
        for dl_id, size in c.execute(f"SELECT id, {self._DL_BYTES} FROM dead_letters"
                                     " ORDER BY id"):
            if dropped >= need_n and freed >= need_b:
                break
            dropped += 1
            freed += size
            last = dl_id
        if last is None:
            return
        c.execute("DELETE FROM dead_letters WHERE id <= ?", (last,))
        self._bump(c, "dead_letter_rows", -dropped)
        self._bump(c, "dead_letter_bytes", -freed)
        self._bump(c, "dead_letters_dropped", dropped)
        _alarm("dead letters full", "ALARM dead letters full (max_dead_letters=%d, "
               "max_dead_letter_bytes=%d): dropped the %d oldest", self.max_dead_letters,
               self.max_dead_letter_bytes, dropped)

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
        rows still in the spool, rows written, rows dropped by drop-oldest. Gaps older than the
        kept seq ranges (max_seq_ranges) are counted in `missing` but not listed in
        `missing_ranges`: `missing_before_seq` names the seq below which they are folded."""
        c = self.conn()
        out = []
        dl = dict(c.execute("SELECT device, COUNT(*) FROM dead_letters WHERE device IS NOT NULL"
                            " GROUP BY device"))
        for (dev, messages, dups, written, first, last, last_t, in_spool, floor, folded,
             first_seq, dropped) in c.execute(
                "SELECT device, messages, duplicates, written, first_seen, last_seen,"
                " last_t_utc_s, in_spool, seq_floor, seq_folded, first_seq, dropped"
                " FROM devices ORDER BY device").fetchall():
            ranges = c.execute("SELECT start_seq, end_seq FROM seq_ranges WHERE device=?"
                               " ORDER BY start_seq", (dev,)).fetchall()
            received = folded + sum(e - s + 1 for s, e in ranges)
            if ranges:
                first_seq = ranges[0][0] if first_seq is None else min(first_seq, ranges[0][0])
                last_seq = ranges[-1][1]
                expected = last_seq - first_seq + 1
            else:
                first_seq = last_seq = None
                expected = 0
            missing = [(ranges[k][1] + 1, ranges[k + 1][0] - 1) for k in range(len(ranges) - 1)]
            out.append({
                "device": dev, "first_seq": first_seq, "last_seq": last_seq,
                "expected": expected, "received": received, "missing": expected - received,
                "missing_ranges": missing, "missing_before_seq": floor,
                "duplicates": dups, "messages": messages,
                "dead_lettered": dl.get(dev, 0), "in_spool": in_spool, "dropped": dropped,
                "written": written, "first_seen": first, "last_seen": last,
                "last_t_utc_s": last_t,
            })
        return out

    def dead_letters(self, limit: int = 100, source: str | None = None) -> list[dict]:
        q = ("SELECT id, created_at, source, topic, device, seq, t_utc_s, reason, payload,"
             " coalesce(payload_len, length(payload)), server_answer FROM dead_letters")
        args: tuple = ()
        if source:
            q += " WHERE source = ?"
            args = (source,)
        q += " ORDER BY id LIMIT ?"
        cols = ("id", "created_at", "source", "topic", "device", "seq", "t_utc_s", "reason",
                "payload", "payload_len", "server_answer")
        return [dict(zip(cols, r)) for r in self.conn().execute(q, args + (limit,))]

    def dead_letter_count(self) -> int:
        return self.conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

    def requeue(self, ids: list[int] | None, check) -> tuple[int, list[tuple[int, str]]]:
        """Move dead letters (all when ids is None) back into samples if `check(topic, payload,
        source)` now accepts them (returns an Accepted, or a reason string) and the history
        agrees: a conflict stays a conflict (the stored sample stays), an identical copy of a
        stored sample is dropped as held. A payload stored truncated never passes. Returns
        (moved, [(id, reason kept)])."""
        c = self.conn()
        moved, kept = 0, []
        now = time.time()
        try:
            with self._tx():
                q = ("SELECT id, source, topic, payload, device,"
                     f" coalesce(payload_len, length(payload)), {self._DL_BYTES}"
                     " FROM dead_letters")
                rows = (c.execute(q + " ORDER BY id").fetchall() if ids is None else
                        [r for i in ids for r in c.execute(q + " WHERE id=?", (i,))])
                gone_n = gone_b = 0
                for dl_id, source, topic, payload, device, plen, size in rows:
                    if plen != len(payload):
                        kept.append((dl_id, f"payload truncated ({len(payload)} of {plen} "
                                            "bytes kept)"))
                        continue
                    verdict = check(topic or f"envbox/v1/{device}/data", payload, source)
                    if isinstance(verdict, str):
                        kept.append((dl_id, verdict))
                        continue
                    [v], hist = self._check_history(c, [verdict], now)
                    if v is not None and v not in ("new", "dup"):
                        kept.append((dl_id, v))
                        continue
                    if v != "dup":
                        cur = c.execute(
                            "INSERT OR IGNORE INTO samples (device, seq, t_utc_s, payload,"
                            " received_at) VALUES (?,?,?,?,?)",
                            (verdict.device, verdict.seq, verdict.t_utc_s, verdict.payload, now))
                        if cur.rowcount:
                            c.execute("INSERT INTO devices (device, in_spool) VALUES (?, 1)"
                                      " ON CONFLICT(device) DO UPDATE SET"
                                      " in_spool = in_spool + 1", (verdict.device,))
                        moved += cur.rowcount
                        if hist:
                            c.executemany("INSERT OR IGNORE INTO history (dev, seq, t_utc_s,"
                                          " digest) VALUES (?,?,?,?)", hist)
                    c.execute("DELETE FROM dead_letters WHERE id=?", (dl_id,))
                    gone_n += 1
                    gone_b += size
                if gone_n:
                    self._dl_totals(c)
                    self._bump(c, "dead_letter_rows", -gone_n)
                    self._bump(c, "dead_letter_bytes", -gone_b)
        except BaseException:
            self._reload_caches(c)
            raise
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
