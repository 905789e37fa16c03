"""Gateway counters and gauges, their Prometheus text form, and the /metrics + /healthz server."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("envbox.gateway.metrics")

# name -> help text. Counters only grow within one process's life.
COUNTERS = {
    "received": "MQTT messages received (including broker redeliveries)",
    "received_batches": "received messages that were KIND_BATCH (a box's catch-up, many samples)",
    "received_samples": "samples carried by the received messages that decoded",
    "spooled": "samples newly stored in the spool",
    "duplicates": "samples the gateway already held: identical copies (redeliveries, resends)",
    "acked": "PUBACKs written to the broker's socket (each after its message's spool commit)",
    "ack_queued": "PUBACKs handed to the MQTT client after their spool commit",
    "puback_waits_timed_out": "commits that went ahead after waiting 1 s for the previous group's "
                              "PUBACKs to be written",
    "ack_skipped": "messages not acknowledged because the connection they came on was gone",
    "acks_sent": "acknowledgements published to the boxes (KIND_ACK, retained, after the commit)",
    "ack_bytes": "MQTT bytes of the acknowledgements published (headers, topic, payload)",
    "ack_publish_failed": "acknowledgements that could not be published (not connected; retried)",
    "ack_unrepresentable": "acknowledgements not sent because the seqs are >= 2^30 - 1",
    "malformed": "messages whose payload did not decode (dead-lettered)",
    "rejected": "decoded samples refused by validation: wrong device, bad time (dead-lettered)",
    "too_old": "samples older than [ingest] max_past_s (dead-lettered)",
    "conflicts": "samples whose seq or time was stored with other content (dead-lettered; the "
                 "stored point is unchanged)",
    "dead_lettered": "malformed messages, rejected samples and refused rows moved to the dead letters",
    "dead_lettered_sink": "rows the database refused with a 4xx, moved to the dead letters",
    "written": "samples the database acknowledged with 2xx",
    "write_requests": "write requests sent to the database",
    "retried": "failed write attempts that will be retried (5xx, 429, time-out, refused)",
    "bisections": "4xx answers that made the writer split a batch to find the refused rows",
    "dropped_oldest": "samples dropped because the spool reached max_rows",
    "commits": "spool transactions of ingest (commit groups)",
    "commit_us": "microseconds spent in those transactions (checks, inserts, fsync)",
    "spool_errors": "spool transactions that failed (messages stay unacknowledged)",
    "connects": "successful MQTT connections",
    "disconnects": "MQTT disconnections",
    "session_missing": "connections on which the broker had no session for us",
    "callback_errors": "exceptions caught in MQTT callbacks",
}


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self._c = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._c[name] += n

    def attach(self, names, shared) -> None:
        """Add shared[i] (a multiprocessing Array another process counts in) to names[i]: the
        writer process's counters ([sink] writer_process)."""
        self._shared = (tuple(names), shared)

    _shared = None

    def get(self, name: str) -> int:
        return self.snapshot()[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            d = dict(self._c)
        if self._shared is not None:
            names, arr = self._shared
            for name, v in zip(names, arr[:]):
                d[name] += v
        return d


def prometheus_text(counters: dict[str, int], gauges: dict[str, tuple[float, str]]) -> str:
    lines = []
    for name, v in counters.items():
        full = f"envbox_gateway_{name}_total"
        lines.append(f"# HELP {full} {COUNTERS.get(name, name)}")
        lines.append(f"# TYPE {full} counter")
        lines.append(f"{full} {v}")
    for name, (v, help_) in gauges.items():
        full = f"envbox_gateway_{name}"
        lines.append(f"# HELP {full} {help_}")
        lines.append(f"# TYPE {full} gauge")
        lines.append(f"{full} {float(v)!r}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves GET /metrics (Prometheus text 0.0.4) and GET /healthz (JSON; 200 healthy, 503 not)."""

    def __init__(self, host: str, port: int, gateway, timeout_s: float = 5.0,
                 max_connections: int = 8):
        gw = gateway

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s          # socket time-out: a silent client is dropped
            def do_GET(self):  # noqa: N802 - http.server's naming
                try:
                    if self.path == "/metrics":
                        body = gw.prometheus().encode()
                        self._send(200, "text/plain; version=0.0.4; charset=utf-8", body)
                    elif self.path == "/healthz":
                        h = gw.health()
                        self._send(200 if h["ok"] else 503, "application/json",
                                   json.dumps(h).encode())
                    else:
                        self._send(404, "text/plain", b"not found\n")
                except Exception as e:  # noqa: BLE001 - a metrics bug must not kill the server
                    log.exception("metrics handler")
                    self._send(500, "text/plain", f"{e}\n".encode())

            def _send(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        slots = threading.BoundedSemaphore(max_connections)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request, client_address):
                # at most max_connections handler threads: more are closed at once
                if not slots.acquire(blocking=False):
                    self.shutdown_request(request)
                    return
                try:
                    super().process_request(request, client_address)
                except Exception:
                    slots.release()
                    raise

            def process_request_thread(self, request, client_address):
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    slots.release()

        self.httpd = Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="gw-http",
                                       daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
