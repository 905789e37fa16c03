# The box's application: the composition of its parts, one asyncio task per concern (Hinch's
# shape):
#
#   io, sampler   firmware/sampler.py: polls the buses, disciplines the clock, takes a sample at
#                 every grid second and appends it to the flash journal; never waits for the
#                 network
#   uplink        firmware/uplink.py: the MQTT session; sends the journal's samples (newest
#                 first, then the backlog in batches) and releases them when a gateway
#                 acknowledges them; status, remote config, reconnects
#   link          the board's network supervisor (board.link), where the board has one
#
# The board object (boards/<name>.py, defaults in firmware/boardbase.py) supplies the clock, the
# drivers, the flash (board.open_journal) and the network settings. docs/firmware.md explains the
# journal, the uplink and the figures.

import asyncio
import gc
import json
import os


from .clock import Clock
from .compat import cold
from .sampler import Applied, Sampler
from .uplink import Uplink

_cold = cold


class State:
    """Small persisted facts (state.json, written by rename): boot counter, the next seq for a
    box whose journal is empty, whether the last run ended cleanly, dropped total."""

    def __init__(self, path):
        self.path = path
        self.d = {"boot": 0, "seq_next": 0, "clean": True, "dropped": 0}
        try:
            with open(path) as f:
                self.d.update(json.load(f))
        except (OSError, ValueError):
            pass

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.d, f)
        os.rename(tmp, self.path)


def mqtt_client(up):
    """The uplink's client factory on a box: firmware/mqtt.py with the board's settings."""
    from .mqtt import MQTTClient
    b = up.board
    return MQTTClient(up.device, b.broker_host, b.broker_port, keepalive_s=b.keepalive_s,
                      clean_session=False, user=b.mqtt_user, password=b.mqtt_password,
                      will_topic=up.topic_status, will_msg=b"offline", ssl=b.mqtt_ssl,
                      server_hostname=b.mqtt_server_hostname, max_packet=b.max_packet_bytes)


class App:
    def __init__(self, board, client_factory=mqtt_client):
        gc.collect()    # what building the board left behind, before the big buffers
        b = board
        self.board = b
        self.clock = Clock(b.ticks_ms)
        dev = b.device_id
        self.device = dev
        # boot bookkeeping (state.json, reset cause, the journal, the configuration): once
        bm = _cold("boot")
        self.state, self.reset_cause, j, self.cfg_path, cfg = bm.prepare(b, State)
        self.journal = j
        self.dropped_before = self.state.d["dropped"]
        applied = Applied(cfg)
        cfg = None
        gc.collect()
        self.sampler = Sampler(b, self.clock, j, applied, dev, b.log,
                               on_dropped=self._persist_dropped)
        self.uplink = Uplink(b, j, self.sampler, dev, client_factory,
                             status_json=self.status_json, on_config=self._on_config)
        # without TLS or a login (allowed only by config.json's `insecure: true`): the status
        # message says so; without either and not allowed, the box does not connect (main)
        self.uplink.insecure = b.connection_insecure()
        self.net_refusal = b.net_refusal()
        self.seq_first = j.next_seq
        self.start_ms = b.ticks_ms()
        self._arm_watchdog()
        bm.log_boot(self)

    @property
    def cfg(self):
        return self.sampler.cfg

    @property
    def period_s(self):
        return self.sampler.cfg.period_s

    def _arm_watchdog(self):
        # a cycle every period: allow three missed ones before the reset
        p_ms = self.period_s * 3000
        self.board.wdt_start(p_ms if p_ms > self.board.wdt_timeout_ms else
                             self.board.wdt_timeout_ms)

    def _persist_dropped(self):
        # the journal was full and dropped its oldest data (rare: once per segment): persist
        # the count now, so a crash does not lose it
        self.state.d["dropped"] = self.dropped_before + self.journal.dropped
        try:
            self.state.save()
        except OSError:
            pass

    def _on_config(self, payload):
        """A message on the config topic: firmware/config.py handle() (loaded for it)."""
        return _cold("config").handle(self, payload)

    def apply_config(self, cfg):
        """A validated, persisted configuration takes effect (no reboot)."""
        self.sampler.cfg = Applied(cfg)
        self._arm_watchdog()

    async def _offline(self, why):
        self.board.log("uplink: " + why)
        while not self.uplink.done:
            await asyncio.sleep_ms(1000)

    # ---------------------------------------------------------------- status
    def status_json(self):
        return _cold("status").status_json(self)

    # ---------------------------------------------------------------- main
    async def main(self):
        b = self.board
        # no credentials: sample and journal, never connect (a box must not talk to a broker in
        # the clear or anonymously unless its config says it may)
        up_run = (self.uplink.run() if self.net_refusal is None
                  else self._offline(self.net_refusal))
        tasks = [asyncio.create_task(self.sampler.io_task()),
                 asyncio.create_task(up_run)]
        if b.link is not None:
            tasks.append(asyncio.create_task(b.link.run()))
        await self.sampler.run()
        # run_until reached (simulated patrol): drain, log the totals, stop cleanly
        await _cold("finish").finish(self, tasks, tasks[1])

def run(board):
    app = App(board)
    asyncio.run(app.main())
    return app
