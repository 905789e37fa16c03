"""Gateway sinks: where the writer's lines go, and what the server's answer means.

  influx1  POST the lines to /write?db=..&precision=s of InfluxDB 1.x (1.6/1.7 have no 2.x
           API), with urllib: no client library loaded.
  influx2  influxdb_client's write_api in SYNCHRONOUS mode (its batching mode keeps data in RAM
           and drops it after 180 s of retries, so our own spool and retry loop replace it).

A sink's write(lines) returns on a 2xx and otherwise raises one of two exceptions, which is all
the writer (writer.py) knows of HTTP:

  Retryable  5xx, 429, time-outs, refused connections, and 401/403/404/407/408 (configuration
             trouble: the data is fine, the server is not ready for it), with the Retry-After
             it asked for, if any: the writer backs off and sends the same rows again.
  Refused    any other 4xx (400 bad data / field type conflict, 413, 422), with the server's
             answer: the rows themselves are refused, the writer isolates them by bisection.

A sink is anything with write(lines) and close() raising these (Writer(..., sink=...)).
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

# influxdb_client is imported inside Influx2Sink: importing it costs about 28 MB of resident
# memory (measured: 12 -> 40 MB), more than a third of the gateway's, and the influx1 sink
# does not need it.

from .config import SinkConfig

log = logging.getLogger("envbox.gateway.writer")   # the writer's log, as before the split

# 4xx answers that are about the server or our credentials, not about the rows: keep retrying.
CONFIG_STATUSES = frozenset({401, 403, 404, 407, 408})


class Retryable(Exception):
    """The rows are fine, the server could not take them now: send them again later."""

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
