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

import sys

from .clock import Clock
from .compat import ticks_diff
from .sampler import Applied, Sampler
from .uplink import Uplink

_PKG = __name__[:__name__.rfind(".")]   # "firmware" on the box, "envbox.firmware" on a host


def _cold(name):
    """Import a rarely used module (config parsing, the status message) for one use: it is
    removed from sys.modules again, so its bytecode is garbage once the caller is done (every
    KB of a 110 KB heap counts; on a device the module is read from flash again next time)."""
    full = _PKG + "." + name
    m = __import__(full, None, None, (name,))
    sys.modules.pop(full, None)
    pkg = sys.modules.get(_PKG)
    if pkg is not None and getattr(pkg, name, None) is m:
        delattr(pkg, name)      # the package keeps its submodules as attributes, too
    return m


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
        sd = b.state_dir
        try:
            os.mkdir(sd)
        except OSError:
            pass
        # boot bookkeeping: boot counter, reset cause (the board's, or derived from whether the
        # previous run shut down cleanly), seq continuation
        self.state = State(sd + "/state.json")
        st = self.state.d
        st["boot"] += 1
        cause = b.reset_cause()
        if cause is None:
            cause = "power_on" if st["clean"] else "power_loss_or_crash"
        self.reset_cause = cause
        self.journal = b.open_journal()
        j = self.journal
        j.start_seq(st["seq_next"])
        st["seq_next"] = j.next_seq
        st["clean"] = False
        self.state.save()
        self.dropped_before = st["dropped"]
        # configuration (persisted remote config, else defaults with the board's period)
        self.cfg_path = sd + "/config.json"
        cm = _cold("config")
        cfg = cm.load(self.cfg_path)
        try:
            os.stat(self.cfg_path)
        except OSError:
            cfg["period_s"] = b.period_s
        applied = Applied(cfg)
        cm = None
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
        b.log("boot %d reset_cause=%s journal %s next_seq=%d released=%d depth=%d torn=%d "
              "capacity=%d" % (st["boot"], cause, j.__class__.__name__, j.next_seq, j.released,
                               j.depth(), j.torn_tails, j.capacity_bytes))

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
        """A message on the config topic: check its signature, validate, persist, apply;
        returns the status message that says what happened (or None for the retained copy of
        what is in force, and for a cleared topic). Whatever arrives is answered: a message too
        large for the MQTT client (payload None, read past and acknowledged by firmware/mqtt.py),
        unsigned or forged, unparseable, invalid or older than what is applied is `refused` with
        the reason, and the configuration in force stays."""
        kept = self.cfg.version
        if payload is None:
            return self._refused("larger than %d bytes" % self.board.max_packet_bytes, kept)
        if not len(payload):
            return None     # the retained config was cleared: nothing to apply
        b = self.board
        cm = _cold("config")
        doc, err = cm.unwrap(b.config_key, self.device, payload, b.insecure)
        if doc is None:
            return self._refused(err, kept)
        try:
            doc = json.loads(doc)
        except ValueError:
            return self._refused("config is not JSON", kept)
        cfg, err = cm.validate(doc)
        if cfg is None:
            return self._refused(err, kept)
        if cfg == self.cfg.cfg:
            return None     # the retained copy of what is already in force (every reconnect)
        v = cfg["version"]
        if v <= kept:
            # an old document replayed (signed once, still valid) or a new one that forgot to
            # count up: only a newer version replaces what is in force
            return self._refused("version %d is not newer than the applied %d" % (v, kept), kept)
        try:
            cm.save(self.cfg_path, cfg)
        except OSError as e:
            return self._refused("persist failed: %s" % e, kept)
        self.sampler.cfg = Applied(cfg)
        self._arm_watchdog()
        return '{"config":"applied","version":%d}' % v

    @staticmethod
    def _refused(why, kept):
        return '{"config":"refused","error":%s,"kept_version":%d}' % (json.dumps(why), kept)

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
        up = tasks[1]
        await self.sampler.run()
        # run_until reached (simulated patrol): wait until every sample is acknowledged
        self.uplink.done = True
        self.sampler.wake.set()
        deadline = b.wall_ms()
        j = self.journal
        while j.depth() and ticks_diff(b.wall_ms(), deadline) < b.drain_timeout_ms:
            b.wdt_feed()        # sampling has ended on purpose: the watchdog is not for this
            await asyncio.sleep_ms(50)
        s = self.sampler
        u = self.uplink
        b.log("done: samples=%d seq=%d..%d unacked=%d dropped=%d torn=%d reconnects=%d "
              "late_slots=%d batches=%d batch_samples=%d live=%d acks=%d resends=%d "
              "journal_bytes=%d journal_failures=%d"
              % (s.samples, self.seq_first, j.next_seq - 1, j.depth(), j.dropped,
                 j.torn_tails, u.reconnects, s.late_slots, u.batches, u.batch_samples,
                 u.live_sent, u.acks, u.resends, j.bytes_written, s.journal_failures))
        fs = getattr(b, "flash_stats", None)
        if fs is not None and fs() is not None:
            b.log("flash: programmed=%d erases=%d ops=%d" % fs())
        # the uplink's last words (a mark, DISCONNECT): up to 5 s, the watchdog fed meanwhile
        t0 = b.wall_ms()
        while not up.done() and ticks_diff(b.wall_ms(), t0) < 5000:
            b.wdt_feed()
            await asyncio.sleep_ms(50)
        s.done = True
        for t in tasks:
            t.cancel()
        j.close()
        st = self.state.d
        st["clean"] = True
        st["seq_next"] = j.next_seq
        st["dropped"] = self.dropped_before + j.dropped
        self.state.save()


def run(board):
    app = App(board)
    asyncio.run(app.main())
    return app
