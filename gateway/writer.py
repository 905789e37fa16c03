"""Gateway writer: spool -> sink, oldest first, a row leaves the spool only on a 2xx.

The write loop, and only it (Telegraf's running output): each round takes up to batch_size
rows from the spool, turns them into line protocol (lines.py) and writes them through a sink
(sinks.py: InfluxDB 1.x or the 2.x API; Writer(..., sink=...) takes any object with
write(lines) and close()). What the answer means is the sink's to say:

  2xx        -> delete the rows from the spool.
  Retryable  -> back off exponentially with full jitter, honouring Retry-After, and retry the
                same rows forever; nothing is dropped for failing to reach the server.
  Refused    -> split the batch in halves until the refused rows are isolated; a single
                refused row goes to the dead letters with the server's answer, every good row
                still gets written. InfluxDB 1.x answers a partial write with 400 after storing
                the good points; bisecting rewrites them, which is harmless because a point is
                identified by measurement + tags + timestamp.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# influxdb_client is not imported here, nor by lines.py or the influx1 sink: importing it
# costs about 28 MB of resident memory (measured: 12 -> 40 MB), more than a third of the
# gateway's. Only the influx2 sink (sinks.Influx2Sink) and sample_point load it.

from .config import Config
from .lines import LineBuilder
from .metrics import Counters
from .ratelog import RateLimited
from .sinks import Refused, Retryable, make_sink
from .spool import Row, Spool

log = logging.getLogger("envbox.gateway.writer")
_refused = RateLimited(log, level=logging.ERROR)


class Writer:
    def __init__(self, cfg: Config, spool: Spool, counters: Counters, sink=None):
        self.cfg = cfg
        self.spool = spool
        self.counters = counters
        self.sink = sink or make_sink(cfg.sink)
        self.lines = LineBuilder(cfg.sink.measurement)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_success_s: float | None = None   # time.time() of the last 2xx
        self.last_error: str | None = None
        self.failing_since_s: float | None = None  # time.time() of the first failure in a row

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gw-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the write in flight (a back-off wait is cut short), then return."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception:  # noqa: BLE001
            pass

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def _run(self) -> None:
        ensure = getattr(self.sink, "ensure_database", None)
        if ensure:
            try:
                ensure()          # at start, so the database exists before the first sample
            except Retryable as e:
                log.warning("cannot create the database yet (%s); will retry with the writes", e)
        # Two stages: this thread reads the next rows and builds their lines while the `post`
        # thread has the previous write on the way (InfluxDB works on it meanwhile, and the
        # socket wait releases the GIL). Never more than one write in flight, so the order of
        # writes, retries and bisections is as before; rows leave the spool only on a 2xx.
        # Profiled drain: building lines and InfluxDB's own work each took about half of the
        # time per batch, one after the other; overlapped, the drain rate rose by about half.
        post = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gw-writer-post")
        inflight = None          # Future of the write on the way
        after_id = 0             # every row up to this id is written or in flight
        try:
            while not self._stop.is_set():
                try:
                    rows = self.spool.fetch(self.cfg.sink.batch_size, after_id)
                except Exception:  # noqa: BLE001 - e.g. a locked or broken spool: try again
                    log.exception("reading the spool")
                    self._stop.wait(1.0)
                    continue
                if not rows:
                    if inflight is not None:
                        if not self._finish(inflight):
                            after_id = 0
                        inflight = None
                        continue
                    after_id = 0     # rows requeued below our mark are taken up again
                    self._stop.wait(self.cfg.sink.idle_poll_s)
                    continue
                try:
                    good, lines = self.prepare(rows)
                except Exception:  # noqa: BLE001 - keep the writer alive; rows stay spooled
                    log.exception("writer round failed")
                    self._stop.wait(1.0)
                    continue
                after_id = rows[-1].id
                if inflight is not None:
                    ok = self._finish(inflight)
                    inflight = None
                    if not ok:       # that write did not finish: start again from the oldest
                        after_id = 0
                        continue
                if good:
                    inflight = post.submit(self._write, good, lines)
            if inflight is not None:
                self._finish(inflight)   # a back-off wait is cut short by _stop
        finally:
            post.shutdown(wait=True)

    def _finish(self, fut) -> bool:
        """Wait for the write on the way; True if its rows were written or dead-lettered."""
        try:
            return bool(fut.result())
        except Exception:  # noqa: BLE001 - rows stay in the spool and are fetched again
            log.exception("writer round failed")
            self._stop.wait(1.0)
            return False

    def prepare(self, rows: list[Row]) -> tuple[list[Row], list[str]]:
        """The rows' lines; a row whose line cannot be built is dead-lettered (cannot happen for
        rows ingest accepted)."""
        lines, good = [], []
        line = self.lines.line
        for r in rows:
            try:
                lines.append(line(r.device, r.payload))
                good.append(r)
            except Exception as e:  # noqa: BLE001
                self.spool.dead_letter_rows([r], f"cannot build a point: {e}", "")
                self.counters.add("dead_lettered")
                self.counters.add("dead_lettered_sink")
        return good, lines

    def write_rows(self, rows: list[Row]) -> bool:
        """Write `rows` until they are stored or dead-lettered; False if stopped first."""
        good, lines = self.prepare(rows)
        if not good:
            return True
        return self._write(good, lines)

    def _write(self, rows: list[Row], lines: list[str]) -> bool:
        attempt = 0
        sc = self.cfg.sink
        while True:
            try:
                self.counters.add("write_requests")
                self.sink.write(lines)
            except Retryable as e:
                attempt += 1
                self.counters.add("retried")
                self.last_error = str(e)
                if self.failing_since_s is None:
                    self.failing_since_s = time.time()
                backoff = random.uniform(0, min(sc.retry_max_s,
                                                sc.retry_initial_s * 2 ** (attempt - 1)))
                if e.retry_after_s is not None:
                    backoff = max(backoff, min(e.retry_after_s, sc.retry_after_max_s))
                log.warning("write of %d rows failed (%s); retry %d in %.1f s",
                            len(rows), e, attempt, backoff)
                if self._stop.wait(backoff):
                    return False      # rows stay in the spool for the next start
                continue
            except Refused as e:
                self.failing_since_s = None
                if len(rows) == 1:
                    _refused("refused", "InfluxDB refused the sample %s seq %d t %d: %s; "
                             "dead-lettered", rows[0].device, rows[0].seq, rows[0].t_utc_s, e)
                    self.spool.dead_letter_rows(rows, f"refused by the database (HTTP {e.status})",
                                                e.answer)
                    self.counters.add("dead_lettered")
                    self.counters.add("dead_lettered_sink")
                    return True
                self.counters.add("bisections")
                mid = len(rows) // 2
                return (self._write(rows[:mid], lines[:mid])
                        and self._write(rows[mid:], lines[mid:]))
            self.spool.delete_written(rows)
            self.counters.add("written", len(rows))
            self.last_success_s = time.time()
            self.failing_since_s = None
            self.last_error = None
            if attempt:
                log.info("write of %d rows succeeded after %d retries", len(rows), attempt)
            return True
