"""The gateway as one object: spool + ingest + writer (+ optional /metrics and /healthz).

    gw = Gateway(config.load("gateway.toml")).start()
    ...
    gw.stats()      # counters and gauges
    gw.stop()       # commit + ack what arrived, disconnect, finish the write in flight

Usable in-process (the demo, tests) or through `envbox-gateway run` (cli.py).
"""

from __future__ import annotations

import logging
import time

from .config import Config, http_address, spool_kwargs
from .ingest import Ingest
from .metrics import Counters, MetricsServer, prometheus_text
from .spool import Spool
from .writer import Writer

log = logging.getLogger("envbox.gateway")

# /healthz says unhealthy when the database has been failing this long with rows waiting.
SINK_FAILING_UNHEALTHY_S = 300.0


class Gateway:
    def __init__(self, cfg: Config, sink=None, mqtt_client=None):
        """`sink`: the writer's sink instead of make_sink(cfg.sink) (sinks.py); `mqtt_client`:
        ingest's paho client instead of make_client(cfg.mqtt) (ingest.py)."""
        self.cfg = cfg
        self.counters = Counters()
        s = cfg.spool
        self.spool = Spool(s.path, **spool_kwargs(s))
        self.ingest = Ingest(cfg, self.spool, self.counters, client=mqtt_client)
        if cfg.sink.writer_process:
            from .writerproc import WriterProcess
            self.writer = WriterProcess(cfg, self.spool, self.counters, sink=sink)
        else:
            self.writer = Writer(cfg, self.spool, self.counters, sink=sink)
        self.http: MetricsServer | None = None
        self.started_s: float | None = None

    def start(self) -> "Gateway":
        log.info("gateway starting: %r", self.cfg)   # secrets are masked by the repr
        from .config import warnings
        for w in warnings(self.cfg):
            log.warning("%s", w)
        self.started_s = time.time()
        self.writer.start()      # first: a writer process is forked before paho's thread exists
        self.ingest.start()
        addr = http_address(self.cfg)
        if addr:
            self.http = MetricsServer(addr[0], addr[1], self, self.cfg.http.timeout_s,
                                      self.cfg.http.max_connections).start()
            log.info("metrics on http://%s:%d/metrics", addr[0], self.http.port)
        return self

    def stop(self) -> None:
        # Ingest first: commit and acknowledge what arrived, then leave the broker (it queues
        # the rest for our session). Then the writer finishes the write in flight.
        self.ingest.stop()
        self.writer.stop()
        if self.http:
            self.http.stop()
        log.info("gateway stopped: %s", self.counters.snapshot())

    def alive(self) -> bool:
        return self.ingest.alive() and self.writer.alive()

    def stats(self) -> dict:
        d = self.counters.snapshot()
        d["spool_depth"] = self.spool.depth
        d["mqtt_connected"] = self.ingest.connected
        d["mqtt_subscribed"] = self.ingest.subscribed
        d["inbox_messages"] = len(self.ingest._q)
        d["held_messages_peak"] = self.ingest.held_peak
        d["acks_pending_boxes"] = self.ingest.acker.pending()
        return d

    def wait_drained(self, timeout: float = 30.0) -> bool:
        """True once nothing is queued in memory or in the spool (tests, demo)."""
        from envbox.servers import eventually
        try:
            eventually(lambda: not len(self.ingest._q) and self.spool.depth == 0, timeout,
                       what="gateway drained")
            return True
        except TimeoutError:
            return False

    def health(self) -> dict:
        now = time.time()
        problems = []
        if not self.ingest.alive():
            problems.append("ingest thread died")
        if not self.writer.alive():
            problems.append("writer died")
        if not self.ingest.connected:
            problems.append("not connected to the MQTT broker")
        elif not self.ingest.subscribed:
            problems.append("connected but the subscription is not acknowledged yet")
        if self.ingest.spool_failing_since_s is not None:
            problems.append(f"spool commits failing since {self.ingest.spool_failing_since_s:.0f}"
                            " (disk full?); the broker holds the unacknowledged messages")
        fs = self.writer.failing_since_s
        if fs is not None and now - fs > SINK_FAILING_UNHEALTHY_S:
            problems.append(f"database writes failing for {now - fs:.0f} s: "
                            f"{self.writer.last_error}")
        return {"ok": not problems, "problems": problems, "spool_depth": self.spool.depth,
                "mqtt_connected": self.ingest.connected,
                "mqtt_subscribed": self.ingest.subscribed,
                "mqtt_session_present": self.ingest.session_present,
                "last_write_ok_s": self.writer.last_success_s,
                "last_write_error": self.writer.last_error}

    def prometheus(self) -> str:
        w = self.writer
        gauges = {
            "spool_depth_samples": (self.spool.depth, "samples waiting in the spool"),
            "mqtt_connected": (int(self.ingest.connected), "1 while connected to the broker"),
            "mqtt_subscribed": (int(self.ingest.subscribed),
                                "1 once the broker acknowledged the subscription"),
            "sink_failing": (int(w.failing_since_s is not None),
                             "1 while database writes are failing"),
            "last_write_ok_timestamp_seconds": (w.last_success_s or 0,
                                                "Unix time of the last 2xx from the database"),
            "up_since_timestamp_seconds": (self.started_s or 0, "Unix time the gateway started"),
            "inbox_messages": (len(self.ingest._q), "messages received and waiting for a commit "
                                                    "group ([ingest] queue_max_messages)"),
            "held_messages_peak": (self.ingest.held_peak,
                                   "most messages received and not yet committed at one time"),
        }
        return prometheus_text(self.counters.snapshot(), gauges)
