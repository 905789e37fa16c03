"""Gateway writer: spool -> InfluxDB, oldest first, a row leaves the spool only on a 2xx.

One thread. Each round takes up to batch_size rows, turns each into an influxdb_client Point
(docs/contracts.md "InfluxDB schema": measurement `envbox`, tag `device`, the box's time in
seconds, every numeric field a float) and writes them through the configured sink:

  influx1  POST line protocol (Point.to_line_protocol(), never escaped by hand) to
           /write?db=..&precision=s of InfluxDB 1.x (1.6/1.7 have no 2.x API).
  influx2  influxdb_client's write_api in SYNCHRONOUS mode (its batching mode keeps data in RAM
           and drops it after 180 s of retries, so our own spool and retry loop replace it).

Answers: 2xx -> delete the rows. 5xx, 429, time-outs, refused connections, and 401/403/404
(configuration trouble: the data is fine, the server is not ready for it) -> back off
exponentially with full jitter, honouring Retry-After, and retry the same rows forever; nothing
is dropped for failing to reach the server. Other 4xx (400 bad data / field type conflict, 413,
422) -> split the batch in halves until the refused rows are isolated; a single refused row goes
to the dead letters with the server's answer, every good row still gets written. InfluxDB 1.x
answers a partial write with 400 after storing the good points; bisecting rewrites them, which is
harmless because a point is identified by measurement + tags + timestamp.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from envbox.firmware import wire

from .config import Config, SinkConfig
from .metrics import Counters
from .spool import Row, Spool

log = logging.getLogger("envbox.gateway.writer")

STATUS_CODES = {name: float(i) for i, name in enumerate(wire.STATUS_NAMES)}
# 4xx answers that are about the server or our credentials, not about the rows: keep retrying.
CONFIG_STATUSES = frozenset({401, 403, 404, 407, 408})


class Retryable(Exception):
    def __init__(self, msg, status=None, retry_after_s=None):
        super().__init__(msg)
        self.status = status
        self.retry_after_s = retry_after_s


class Refused(Exception):
    """The server refused the data itself (a 4xx about the rows)."""

    def __init__(self, status, answer):
        super().__init__(f"HTTP {status}: {answer}")
        self.status = status
        self.answer = answer


def sample_point(measurement: str, d: dict) -> Point:
    """A decoded wire sample (wire.decode) as a Point, per docs/contracts.md."""
    p = Point(measurement).tag("device", d["device"]).time(d["t_utc_s"], WritePrecision.S)
    p.field("seq", float(d["seq"]))
    g = d["gps"]
    if g:
        for k in ("lat_deg", "lon_deg", "alt_m", "speed_kmh", "course_deg", "sats", "hdop",
                  "fix_quality"):
            if g[k] is not None:       # course is unknown while standing still
                p.field(k, float(g[k]))
    else:
        p.field("fix_quality", 0.0)
    for name, ch in d["channels"].items():
        if ch["value"] is not None:
            p.field(name, float(ch["value"]))
        p.field(name + "_status", STATUS_CODES[ch["status"]])
    return p


def parse_retry_after(value) -> float | None:
    """Retry-After is delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def classify(status: int, answer: str, retry_after) -> Exception:
    if status == 429 or status >= 500 or status in CONFIG_STATUSES:
        return Retryable(f"HTTP {status}: {answer[:500]}", status, parse_retry_after(retry_after))
    return Refused(status, answer[:4000])


class Influx1Sink:
    """InfluxDB 1.x /write with line protocol, seconds precision."""

    def __init__(self, cfg: SinkConfig):
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        q = {"db": cfg.database, "precision": "s"}
        if cfg.retention_policy:
            q["rp"] = cfg.retention_policy
        self.write_url = f"{self.base}/write?{urllib.parse.urlencode(q)}"
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.gzip:
            self.headers["Content-Encoding"] = "gzip"
        if cfg.username:
            tok = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {tok}"
        self.db_ready = not cfg.create_database

    def _post(self, url, body: bytes, ctype=None):
        h = dict(self.headers)
        if ctype:
            h["Content-Type"] = ctype
            h.pop("Content-Encoding", None)
        req = urllib.request.Request(url, data=body, headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            answer = e.read().decode("utf-8", "replace")
            raise classify(e.code, answer.strip(), e.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError) as e:   # refused, reset, time-out
            raise Retryable(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None

    def ensure_database(self) -> None:
        if self.db_ready:
            return
        q = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.cfg.database}"'}).encode()
        try:
            self._post(self.base + "/query", q, "application/x-www-form-urlencoded")
        except Refused as e:
            raise Retryable(f"CREATE DATABASE refused: {e}", e.status) from None
        self.db_ready = True
        log.info("InfluxDB database %r is there", self.cfg.database)

    def write(self, points: list[Point]) -> None:
        self.ensure_database()
        body = "\n".join(p.to_line_protocol(WritePrecision.S) for p in points).encode()
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=5)
        try:
            self._post(self.write_url, body)
        except Retryable as e:
            if e.status == 404 and self.cfg.create_database:
                self.db_ready = False    # database dropped under us: create it on the retry
            raise

    def close(self):
        pass


class Influx2Sink:
    """The 2.x write API through influxdb_client (SYNCHRONOUS)."""

    def __init__(self, cfg: SinkConfig):
        self.cfg = cfg
        # retries=False (the default): our loop retries, with the spool as the buffer.
        self.client = InfluxDBClient(url=cfg.url, token=cfg.token or None, org=cfg.org or "-",
                                     timeout=int(cfg.timeout_s * 1000), enable_gzip=cfg.gzip)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, points: list[Point]) -> None:
        try:
            self.api.write(bucket=self.cfg.bucket, org=self.cfg.org or "-", record=points,
                           write_precision=WritePrecision.S)
        except ApiException as e:
            body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else str(e.body)
            ra = e.headers.get("Retry-After") if e.headers else None
            raise classify(e.status or 0, body.strip(), ra) from None
        except Exception as e:  # noqa: BLE001 - urllib3 connection errors, time-outs
            raise Retryable(f"{type(e).__name__}: {e}") from None

    def close(self):
        self.client.close()


def make_sink(cfg: SinkConfig):
    return Influx1Sink(cfg) if cfg.kind == "influx1" else Influx2Sink(cfg)


class Writer:
    def __init__(self, cfg: Config, spool: Spool, counters: Counters, sink=None):
        self.cfg = cfg
        self.spool = spool
        self.counters = counters
        self.sink = sink or make_sink(cfg.sink)
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
        while not self._stop.is_set():
            try:
                rows = self.spool.fetch(self.cfg.sink.batch_size)
            except Exception:  # noqa: BLE001 - e.g. a locked or broken spool: try again
                log.exception("reading the spool")
                self._stop.wait(1.0)
                continue
            if not rows:
                self._stop.wait(self.cfg.sink.idle_poll_s)
                continue
            try:
                self.write_rows(rows)
            except Exception:  # noqa: BLE001 - keep the writer alive; rows stay in the spool
                log.exception("writer round failed")
                self._stop.wait(1.0)

    def write_rows(self, rows: list[Row]) -> bool:
        """Write `rows` until they are stored or dead-lettered; False if stopped first."""
        points, good = [], []
        for r in rows:
            try:
                points.append(sample_point(self.cfg.sink.measurement, wire.decode(r.payload)))
                good.append(r)
            except Exception as e:  # noqa: BLE001 - cannot happen for rows ingest accepted
                self.spool.dead_letter_rows([r], f"cannot build a point: {e}", "")
                self.counters.add("dead_lettered")
                self.counters.add("dead_lettered_sink")
        if not good:
            return True
        return self._write(good, points)

    def _write(self, rows: list[Row], points: list[Point]) -> bool:
        attempt = 0
        sc = self.cfg.sink
        while True:
            try:
                self.counters.add("write_requests")
                self.sink.write(points)
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
                    log.error("InfluxDB refused the sample %s seq %d t %d: %s; dead-lettered",
                              rows[0].device, rows[0].seq, rows[0].t_utc_s, e)
                    self.spool.dead_letter_rows(rows, f"refused by the database (HTTP {e.status})",
                                                e.answer)
                    self.counters.add("dead_lettered")
                    self.counters.add("dead_lettered_sink")
                    return True
                self.counters.add("bisections")
                mid = len(rows) // 2
                return (self._write(rows[:mid], points[:mid])
                        and self._write(rows[mid:], points[mid:]))
            self.spool.delete_written(rows)
            self.counters.add("written", len(rows))
            self.last_success_s = time.time()
            self.failing_since_s = None
            self.last_error = None
            if attempt:
                log.info("write of %d rows succeeded after %d retries", len(rows), attempt)
            return True
