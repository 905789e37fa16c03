"""Gateway writer: spool -> InfluxDB, oldest first, a row leaves the spool only on a 2xx.

One thread. Each round takes up to batch_size rows, turns each into the line protocol of an
influxdb_client Point (docs/contracts.md "InfluxDB schema": measurement `envbox`, tag `device`,
the box's time in seconds, every numeric field a float; sample_point() defines it, LineBuilder
produces the same text faster, escaping through the library) and writes them through the sink:

  influx1  POST the lines (escaped by influxdb-client, never by hand) to
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
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# influxdb_client is imported where it is used (sample_point, Influx2Sink): importing it costs
# about 28 MB of resident memory (measured: 12 -> 40 MB), more than a third of the gateway's,
# and the influx1 sink and LineBuilder do not need it.

from envbox.firmware import wire

from .config import Config, SinkConfig
from .metrics import Counters
from .ratelog import RateLimited
from .spool import Row, Spool

log = logging.getLogger("envbox.gateway.writer")
_refused = RateLimited(log, level=logging.ERROR)

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


def sample_point(measurement: str, d: dict):
    """A decoded wire sample (wire.decode) as an influxdb_client Point, per docs/contracts.md:
    the definition LineBuilder's output is tested against."""
    from influxdb_client import Point, WritePrecision
    p = Point(measurement).tag("device", d["device"]).time(d["t_utc_s"], WritePrecision.S)
    p.field("seq", float(d["seq"]))
    p.field("flags", float(d["flags"]))
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


# Every field a sample can have, in the order line protocol lists them: influxdb-client's
# _append_fields sorts fields by name, and the lines built below must be byte-identical to its.
_GPS_FIELDS = ("lat_deg", "lon_deg", "alt_m", "speed_kmh", "course_deg", "sats", "hdop",
               "fix_quality")
_ALL_FIELDS = sorted(("seq", "flags") + _GPS_FIELDS
                     + tuple(n for n, _scale in wire.CHANNELS)
                     + tuple(n + "_status" for n, _scale in wire.CHANNELS))
_SLOT = {name: i for i, name in enumerate(_ALL_FIELDS)}
_SEQ, _FLAGS, _FIXQ = _SLOT["seq"], _SLOT["flags"], _SLOT["fix_quality"]
_GPS_SLOTS = tuple(_SLOT[k] for k in _GPS_FIELDS)
_CH_SLOTS = tuple((_SLOT[n], _SLOT[n + "_status"], scale)
                  for n, scale in wire.CHANNELS)
_STATUS_TEXT = tuple(str(i) for i in range(len(wire.STATUS_NAMES)))   # float(i), formatted
_FLAGS_TEXT = tuple(str(i) for i in range(256))
_NOT_FITTED, _OK, _OUT_OF_RANGE = wire.STATUS_NOT_FITTED, wire.STATUS_OK, wire.STATUS_OUT_OF_RANGE


# influxdb-client's line-protocol escaping (influxdb_client/client/write/point.py: _ESCAPE_KEY,
# _ESCAPE_MEASUREMENT, _escape_key, _escape_tag_value, _append_tags), restated so the writer
# does not load the library (see above). tests/test_gateway_lines.py compares LineBuilder's
# lines with the library's Point.to_line_protocol() on random and escaping-hungry device names
# and measurements, so a difference, or a library release that escapes otherwise, fails there.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                                     "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                             "\r": r"\r"})


def _escape_key(key: str, table=_ESCAPE_KEY) -> str:
    return str(key).translate(table)


def _tag(key: str, value: str) -> str:
    """One tag as _append_tags writes it: ",key=value " ("" for an empty key or value; a value
    ending in a backslash gets a space so the backslash escapes nothing)."""
    k, v = _escape_key(key), _escape_key(value)
    if v.endswith("\\"):
        v += " "
    return f",{k}={v} " if k and v else " "


class LineBuilder:
    """Line protocol of spooled payloads: the exact text of
    sample_point(measurement, wire.decode(payload)).to_line_protocol(), about 4x cheaper.

    Profiling the writer showed a Point per sample costing more than the rest of the gateway's
    work on that sample: wire.decode builds nested dicts, and Point.to_line_protocol escapes all
    ~36 field keys and type-checks every value again for every sample. Here the escaping is
    influxdb-client's (restated above, _escape_key/_tag), applied once per field name and once
    per device and cached; the payload is read with
    wire.decode_into into one reused Sample (rows in the spool were validated by wire.decode at
    ingest); values are formatted as _append_fields formats a float (str(), a trailing ".0"
    trimmed; every value here is a ratio of integers, never NaN or infinite, which
    _append_fields would leave out). tests/test_gateway_lines.py compares the two on random
    samples, so a library upgrade that changes its output fails there.
    """

    def __init__(self, measurement: str, max_devices: int = 200_000):
        self.measurement = measurement
        self._meas = _escape_key(measurement, _ESCAPE_MEASUREMENT)
        self._keys = [_escape_key(k) + "=" for k in _ALL_FIELDS]
        self._prefix: dict[str, str] = {}
        self._max_devices = max_devices
        self._s = wire.Sample()
        self._vals: list = [""] * len(_ALL_FIELDS)
        self._plans: dict[tuple, tuple[int, ...]] = {}

    def prefix(self, device: str) -> str:
        p = self._prefix.get(device)
        if p is None:
            if len(self._prefix) >= self._max_devices:   # bound the cache on huge fleets
                self._prefix.clear()
            p = self._meas + _tag("device", device)
            self._prefix[device] = p
        return p

    def line(self, device: str, payload: bytes) -> str:
        s = self._s
        wire.decode_into(s, payload, len(payload))
        vals = self._vals      # slot -> the value's text; only the slots in `plan` are read
        # Values are formatted as _append_fields formats float(x): str(), ".0" trimmed. For an
        # integer below 1e16 (seq, sats, raw values of scale 1: all below 2^35) that is str(int).
        vals[_SEQ] = str(s.seq)
        vals[_FLAGS] = _FLAGS_TEXT[s.flags]
        fq = s.fix_quality
        course = fq and s.course_x10 != wire.COURSE_UNKNOWN
        if fq:
            lat, lon, alt, spd, crs, sats, hdop, fqs = _GPS_SLOTS
            vals[lat] = _fmt(s.lat_e7 / 10000000)
            vals[lon] = _fmt(s.lon_e7 / 10000000)
            vals[alt] = _fmt(s.alt_dm / 10)
            vals[spd] = _fmt(s.speed_kmh_x10 / 10)
            if course:
                vals[crs] = _fmt(s.course_x10 / 10)
            vals[sats] = str(s.sats)
            vals[hdop] = _fmt(s.hdop_x10 / 10)
            vals[fqs] = str(fq)
        else:
            vals[_FIXQ] = "0"
        st, val = s.status, s.value
        i = 0
        for v_slot, st_slot, scale in _CH_SLOTS:
            c = st[i]
            if c != _NOT_FITTED:
                if c == _OK or c == _OUT_OF_RANGE:
                    # raw / scale as a float, formatted: integral -> the integer's digits
                    raw = val[i]
                    vals[v_slot] = str(raw // scale) if raw % scale == 0 else str(raw / scale)
                vals[st_slot] = _STATUS_TEXT[c]
            i += 1
        shape = (bool(fq), bool(course), bytes(st))
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan(shape)
        keys = self._keys
        return (f"{self.prefix(device)}{','.join([keys[k] + vals[k] for k in plan])} "
                f"{s.t_s2020 + wire.EPOCH_2020_UNIX_S}")

    def _plan(self, shape) -> tuple[int, ...]:
        """The slots a sample of this shape fills, in line order (field names sorted)."""
        fix, course, st = shape
        present = {_SEQ, _FLAGS}
        if fix:
            present.update(_GPS_SLOTS if course else
                           [k for k in _GPS_SLOTS if k != _SLOT["course_deg"]])
        else:
            present.add(_FIXQ)
        for i, (v_slot, st_slot, _scale) in enumerate(_CH_SLOTS):
            if st[i] != _NOT_FITTED:
                present.add(st_slot)
                if st[i] == _OK or st[i] == _OUT_OF_RANGE:
                    present.add(v_slot)
        plan = tuple(sorted(present))
        if len(self._plans) > 10_000:      # shapes are few; bound it anyway
            self._plans.clear()
        self._plans[shape] = plan
        return plan


def _fmt(v: float) -> str:
    t = str(v)
    return t[:-2] if t.endswith(".0") else t


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
        # https: verify the server against [sink] ca_file (a private CA), else the system's CAs
        self.ssl = (ssl.create_default_context(cafile=cfg.ca_file or None)
                    if self.base.startswith("https:") else None)

    def _post(self, url, body: bytes, ctype=None):
        h = dict(self.headers)
        if ctype:
            h["Content-Type"] = ctype
            h.pop("Content-Encoding", None)
        req = urllib.request.Request(url, data=body, headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s, context=self.ssl) as r:
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

    def write(self, lines: list[str]) -> None:
        self.ensure_database()
        body = "\n".join(lines).encode()
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
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException
        self._precision, self._api_exception = WritePrecision.S, ApiException
        self.cfg = cfg
        # retries=False (the default): our loop retries, with the spool as the buffer.
        self.client = InfluxDBClient(url=cfg.url, token=cfg.token or None, org=cfg.org or "-",
                                     timeout=int(cfg.timeout_s * 1000), enable_gzip=cfg.gzip,
                                     ssl_ca_cert=cfg.ca_file or None)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        try:
            self.api.write(bucket=self.cfg.bucket, org=self.cfg.org or "-", record=lines,
                           write_precision=self._precision)
        except self._api_exception as e:
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
