# The box's application: one asyncio task per concern (Hinch's shape).
#
#   io       polls every driver's bus, disciplines the clock from GNSS fixes, checks the watchdog
#   sampler  at each grid second (UTC multiple of the period) requests, waits, fills, encodes and
#            appends one sample to the flash journal; it never waits for the network
#   uplink   owns the MQTT connection; publishes the newest samples at once (live) and the
#            journal's backlog oldest first in batches (catch-up); releases journal records only on
#            PUBACK; status every minute; remote config; reconnects with exponential backoff and
#            jitter
#
# The board object (boards/<name>.py, defaults in firmware/boardbase.py) supplies the clock, the
# drivers, the state directory on flash and the network settings. docs/firmware.md explains the
# journal, the uplink and the figures.

import asyncio
import gc
import json
import os

import sys

from . import wire
from .clock import Clock, SOURCE_GNSS, SOURCE_NTP
from .compat import ticks_diff
from .journal import Journal, Reader
from .mqtt import MQTTClient

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_PKG = __name__[:__name__.rfind(".")]   # "firmware" on the box, "envbox.firmware" on a host
_SLOPE_ONE = const(10000)
_PID_SUBSCRIBE = const(0xFFF0)   # never one of the publish slots' ids (1..max_inflight)
_STATUS_PERIOD_MS = const(60000)


def _log(board, msg):
    board.log(msg)


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


class Applied:
    """A validated config compiled for the sampler's integer hot path."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.version = cfg["version"]
        self.period_s = cfg["period_s"]
        names = [c[0] for c in wire.CHANNELS]
        mask = (1 << wire.N_CHANNELS) - 1
        if cfg["channels"] is not None:
            mask = 0
            for n in cfg["channels"]:
                mask |= 1 << names.index(n)
        self.enabled_mask = mask
        self.slope_e4 = [_SLOPE_ONE] * wire.N_CHANNELS
        self.offset_raw = [0] * wire.N_CHANNELS
        self.any_cal = False
        for n in cfg["cal"]:
            i = names.index(n)
            c = cfg["cal"][n]
            self.slope_e4[i] = int(c["slope"] * _SLOPE_ONE + 0.5)
            o = c["offset"] * wire.CHANNELS[i][1]
            self.offset_raw[i] = int(o + 0.5) if o >= 0 else -int(-o + 0.5)
            if self.slope_e4[i] != _SLOPE_ONE or self.offset_raw[i]:
                self.any_cal = True

    def apply(self, s):
        """Disable channels and correct values of Sample s in place; no allocation."""
        st = s.status
        val = s.value
        m = self.enabled_mask
        for i in range(wire.N_CHANNELS):
            if not m & (1 << i):
                st[i] = wire.STATUS_NOT_FITTED
                val[i] = 0
        if not self.any_cal:
            return
        done = False
        for i in range(wire.N_CHANNELS):
            c = st[i]
            if c == wire.STATUS_OK or c == wire.STATUS_OUT_OF_RANGE:
                k = self.slope_e4[i]
                o = self.offset_raw[i]
                if k != _SLOPE_ONE or o:
                    # x * k / 10^4 as x * whole + x * frac / 10^4: with slopes up to 10 (10^5)
                    # the plain product of a 16-bit count passes 2^30, a heap integer on 32 bits
                    x = val[i]
                    w = k // _SLOPE_ONE
                    v = x * (k - w * _SLOPE_ONE)
                    v = (v + 5000) // 10000 if v >= 0 else -((-v + 5000) // 10000)
                    val[i] = x * w + v + o
                    done = True
        if done:
            s.flags |= wire.FLAG_CALIBRATED



class App:
    def __init__(self, board):
        gc.collect()    # what building the board left behind, before the big buffers
        b = board
        self.board = b
        self.clock = Clock(b.ticks_ms)
        self.gnss = b.gnss
        self.sensors = b.sensors
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
        self.journal = Journal(sd + "/journal", b.journal_seg_bytes, b.journal_max_segs).open()
        j = self.journal
        j.start_seq(st["seq_next"])
        st["seq_next"] = j.next_seq
        st["clean"] = False
        self.state.save()
        self.dropped_before = st["dropped"]
        self._dropped_saved = 0
        # configuration (persisted remote config, else defaults with the board's period)
        self.cfg_path = sd + "/config.json"
        cm = _cold("config")
        cfg = cm.load(self.cfg_path)
        try:
            os.stat(self.cfg_path)
        except OSError:
            cfg["period_s"] = b.period_s
        self.cfg = Applied(cfg)
        cm = None
        gc.collect()
        self.period_s = self.cfg.period_s
        self.cfg_msgs = []          # status messages about config, sent by the uplink
        self.topic_data = b"envbox/v1/" + dev + b"/data"
        self.topic_status = b"envbox/v1/" + dev + b"/status"
        self.topic_config = b"envbox/v1/" + dev + b"/config"
        # sampler buffers (preallocated)
        self.sample = wire.Sample(dev)
        self.rec = bytearray(wire.MAX_SAMPLE_BYTES)
        # before the clock is known: samples held with their tick (stamped when time is known)
        # (one buffer, made on first need and freed once stamped: most boots never need it)
        self.hold = None
        self.hold_n = None
        self.hold_tick = None
        self.held = 0
        self.hold_dropped = 0
        # uplink buffers (preallocated)
        self.rbuf = bytearray(wire.MAX_SAMPLE_BYTES)
        self.bbuf = bytearray(b.batch_bytes)
        self.bsample = wire.Sample(dev)
        self.benc = wire.BatchEncoder(self.bbuf, self.period_s)
        n = b.max_inflight
        self.if_lo = [0] * n
        self.if_hi = [0] * n
        self.if_used = bytearray(n)
        self.live = Reader(j)
        self.backlog = Reader(j)
        self.catchup_end = 0
        self.backlog_active = False
        self.backlog_next = 0
        self.live_next = 0
        # counters
        self.seq_first = j.next_seq
        self.samples = 0
        self.late_slots = 0
        self.reconnects = 0
        self.pubacks = 0
        self.batches = 0
        self.batch_samples = 0
        self.live_sent = 0
        self.cycle_errors = 0
        self.connected = False
        self.pubacks_this_link = 0
        self.done = False
        self.start_ms = b.ticks_ms()
        self._wake = asyncio.Event()
        self._arm_watchdog()
        _log(b, "boot %d reset_cause=%s journal next_seq=%d released=%d depth=%d torn=%d"
             % (st["boot"], cause, j.next_seq, j.released, j.depth(), j.torn_tails))

    def _arm_watchdog(self):
        # a cycle every period: allow three missed ones before the reset
        p_ms = self.period_s * 3000
        self.board.wdt_start(p_ms if p_ms > self.board.wdt_timeout_ms else
                             self.board.wdt_timeout_ms)

    # ---------------------------------------------------------------- io
    async def io_task(self):
        b = self.board
        g = self.gnss
        clk = self.clock
        for d in self.sensors:
            d.start(b.ticks_ms())
        g.start(b.ticks_ms())
        rtc_set = False
        while not self.done:
            now = b.ticks_ms()
            if g.poll(now):
                # the RMC/GGA of second fix_t_s2020 has just arrived: that second began now
                clk.set(g.fix_t_s2020, now, SOURCE_GNSS)
                if not rtc_set:
                    b.set_rtc(g.fix_t_s2020)
                    rtc_set = True
            for d in self.sensors:
                d.poll(now)
            b.wdt_check()
            await asyncio.sleep_ms(b.poll_ms)

    # ---------------------------------------------------------------- sampler
    async def sampler_task(self):
        b = self.board
        clk = self.clock
        g = self.gnss
        next_t = -1
        hold_tick = b.ticks_ms()
        while True:
            await asyncio.sleep_ms(b.poll_ms)
            period = self.period_s
            if not clk.known():
                # no UTC yet: keep sampling on the tick counter; stamp later
                if ticks_diff(b.ticks_ms(), hold_tick) >= period * 1000:
                    hold_tick = b.ticks_ms()
                    await self._take(-1)
                continue
            if self.held:
                self._stamp_held()
            if next_t < 0 or next_t % period:
                next_t = (clk.now_s() // period + 1) * period
            # Trigger on the fix of the grid second itself (exact position), or on the clock
            # when no fix of that second comes (receiver lost the sky).
            if not g.has_fix(next_t) and clk.now_ms_since(next_t) < b.fix_wait_ms:
                continue
            t = next_t
            next_t += period
            behind = clk.now_ms_since(next_t)
            if behind > 0:
                # we were stalled for more than a period; skip to the current grid slot
                skip = behind // (period * 1000) + 1
                self.late_slots += skip
                next_t += skip * period
            await self._take(t)
            if b.run_until_s2020 is not None and t >= b.run_until_s2020:
                return

    async def _take(self, t):
        b = self.board
        start = b.ticks_ms()
        for d in self.sensors:
            d.request(start)
        while True:
            ready = True
            for d in self.sensors:
                if not d.ready():
                    ready = False
            if ready or ticks_diff(b.ticks_ms(), start) >= b.answer_timeout_ms:
                break
            await asyncio.sleep_ms(b.poll_ms)
        s = self.sample
        s.clear_channels()
        now = b.ticks_ms()
        for d in self.sensors:
            d.fill(s, now)
        s.flags = 0
        if t >= 0:
            self.gnss.fill(s, t)
            src = self.clock.source
            s.flags = (wire.FLAG_CLOCK_FROM_GPS if src == SOURCE_GNSS else
                       wire.FLAG_CLOCK_FROM_NTP if src == SOURCE_NTP else 0)
        else:
            s.fix_quality = 0
        self.cfg.apply(s)
        if t < 0:
            self._hold(s, start)
            return
        s.t_s2020 = t
        self._journal(s)

    def _journal(self, s):
        j = self.journal
        s.seq = j.next_seq
        try:
            n = wire.encode_into(self.rec, s)
            j.append(self.rec, n)
        except OSError as e:        # flash full or failing: counted; the watchdog is not fed
            self.cycle_errors += 1
            _log(self.board, "journal append failed: %r" % (e,))
            return
        self.samples += 1
        if j.dropped != self._dropped_saved:
            # the journal was full and dropped its oldest segment (rare: once per segment):
            # persist the count now, so a crash does not lose it
            self._dropped_saved = j.dropped
            self.state.d["dropped"] = self.dropped_before + j.dropped
            try:
                self.state.save()
            except OSError:
                pass
        self.board.wdt_feed()       # fed only by a sampling cycle that reached the journal
        self._wake.set()

    def _hold(self, s, tick):
        """Before the clock is known: keep the sample in RAM with its tick."""
        k = self.board.hold_slots
        if self.hold is None:
            self.hold = bytearray(k * wire.MAX_SAMPLE_BYTES)
            self.hold_n = [0] * k
            self.hold_tick = [0] * k
        if self.held == k:
            self.hold_dropped += 1   # the oldest held samples stay; newer ones are counted
            self.board.wdt_feed()
            return
        i = self.held
        s.t_s2020 = 0
        s.seq = 0
        self.hold_n[i] = wire.encode_into(
            memoryview(self.hold)[i * wire.MAX_SAMPLE_BYTES:], s)
        self.hold_tick[i] = tick
        self.held += 1
        self.board.wdt_feed()

    def _stamp_held(self):
        """The clock is known: stamp each held sample with the UTC second of its tick, flag it
        FLAG_TIME_FROM_TICKS, and journal it (oldest first, before any grid sample)."""
        s = self.sample
        mv = memoryview(self.hold)
        for i in range(self.held):
            wire.decode_into(s, mv[i * wire.MAX_SAMPLE_BYTES:], self.hold_n[i])
            s.t_s2020 = self.clock.now_s(self.hold_tick[i])
            s.flags |= wire.FLAG_TIME_FROM_TICKS | (
                wire.FLAG_CLOCK_FROM_GPS if self.clock.source == SOURCE_GNSS else
                wire.FLAG_CLOCK_FROM_NTP)
            self._journal(s)
        self.held = 0
        self.hold = self.hold_n = self.hold_tick = None

    # ---------------------------------------------------------------- uplink
    def _on_puback(self, pid):
        i = pid - 1
        if 0 <= i < len(self.if_used) and self.if_used[i]:
            self.if_used[i] = 0
            self.pubacks += 1
            self._release()
            self._wake.set()

    def _release(self):
        """Every seq below the lowest one not yet acknowledged is released."""
        lo = self.backlog_next if self.backlog_active else self.live_next
        for i in range(len(self.if_used)):
            if self.if_used[i] and self.if_lo[i] < lo:
                lo = self.if_lo[i]
        self.journal.release(lo)

    def _free_slot(self, reserve):
        n = 0
        k = -1
        for i in range(len(self.if_used)):
            if not self.if_used[i]:
                n += 1
                if k < 0:
                    k = i
        return k if n > reserve else -1

    def _on_message(self, topic, payload, retained):
        if topic != self.topic_config:
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        cm = _cold("config")
        cfg, err = cm.validate(doc) if doc is not None else (None, "config is not JSON")
        if cfg is None:
            self.cfg_msgs.append('{"config":"refused","error":%s,"kept_version":%d}'
                                 % (json.dumps(err), self.cfg.version))
            return
        if cfg == self.cfg.cfg:
            return      # the retained copy of what is already in force (every reconnect)
        try:
            cm.save(self.cfg_path, cfg)
        except OSError as e:
            self.cfg_msgs.append('{"config":"refused","error":"persist failed: %s"}' % e)
            return
        self.cfg = Applied(cfg)
        self.period_s = cfg["period_s"]
        self._arm_watchdog()
        self.cfg_msgs.append('{"config":"applied","version":%d}' % cfg["version"])

    async def uplink_task(self):
        b = self.board
        backoff = b.backoff_min_ms
        while True:
            c = MQTTClient(self.device, b.broker_host, b.broker_port,
                           keepalive_s=b.keepalive_s, clean_session=False,
                           user=b.mqtt_user, password=b.mqtt_password,
                           will_topic=self.topic_status, will_msg=b"offline", ssl=b.mqtt_ssl)
            c.on_puback = self._on_puback
            c.on_message = self._on_message
            reader = None
            try:
                await c.connect(b.connect_timeout_ms)
                _log(b, "mqtt connected session_present=%d depth=%d"
                     % (c.session_present, self.journal.depth()))
                self.connected = True
                self._start_session()
                await asyncio.wait_for_ms(
                    c.publish(self.topic_status, b"online", 0, qos=0, retain=True), b.io_timeout_ms)
                await asyncio.wait_for_ms(c.subscribe(self.topic_config, _PID_SUBSCRIBE),
                                          b.io_timeout_ms)
                c.last_rx_ms = b.wall_ms()
                reader = asyncio.create_task(c.read_loop(b.wall_ms))
                self._ntp()
                if await self._send_loop(c, reader):
                    return   # clean finish (run_until reached and everything acknowledged)
                backoff = b.backoff_min_ms
            except Exception as e:  # noqa: BLE001 - any failure means: drop the link, retry
                _log(b, "mqtt link lost: %r" % (e,))
            finally:
                self.connected = False
                if reader:
                    reader.cancel()
                c.close()
            if self.pubacks_this_link:
                backoff = b.backoff_min_ms   # the link carried data: not a storm, start low
            self.reconnects += 1
            # exponential backoff with jitter (wall time: this is the network's clock)
            j = os.urandom(1)[0] * backoff // 512
            await asyncio.sleep_ms(backoff // 2 + j)
            backoff = min(backoff * 2, b.backoff_max_ms)

    def _start_session(self):
        """A new connection: what is unreleased is resent. The newest journaled sample and every
        later one go live (one message each, at once); the backlog, every unreleased seq below
        catchup_end, goes in batches, oldest first, in the slots live samples leave free."""
        j = self.journal
        for i in range(len(self.if_used)):
            self.if_used[i] = 0
        self.pubacks_this_link = 0
        self.backlog_next = j.released
        if j.released < j.next_seq:
            # the newest sample goes first, live; the rest is the backlog
            self.catchup_end = j.next_seq - 1
            self.live.seek_seq(self.catchup_end)
            self.live_next = self.catchup_end
            self.backlog_active = j.released < self.catchup_end
            if self.backlog_active:
                self.backlog.seek_seq(j.released)
        else:
            self.catchup_end = j.next_seq
            self.live.seek_end()
            self.live_next = j.next_seq
            self.backlog_active = False

    def _ntp(self):
        if self.clock.source == SOURCE_GNSS:
            return
        t = self.board.ntp_s2020()
        if t is not None:
            self.clock.set(t, self.board.ticks_ms(), SOURCE_NTP)
            self.board.set_rtc(t)

    async def _publish_live(self, c, slot):
        n = self.live.read(self.rbuf)
        if not n:
            return False
        seq = self.live.seq
        self.if_lo[slot] = seq
        self.if_hi[slot] = seq
        self.if_used[slot] = 1
        self.live_next = seq + 1
        await asyncio.wait_for_ms(
            c.publish(self.topic_data, memoryview(self.rbuf)[:n], slot + 1, qos=1),
            self.board.io_timeout_ms)
        self.live_sent += 1
        return True

    async def _publish_batch(self, c, slot):
        """Read backlog records up to catchup_end into one batch (or a single payload if only
        one is left) and publish it."""
        rd = self.backlog
        e = self.benc
        e.period_s = self.period_s
        s = self.bsample
        first = -1
        while e.count < self.board.batch_max_samples or first < 0:
            if first >= 0 and (not e.room() or self.journal.next_seq > self.live_next):
                break   # full, or a new sample is waiting: send this batch, the live one next
            n = rd.read(self.rbuf)
            if not n:
                break
            if rd.seq >= self.catchup_end:
                # that record is a live one (the live reader has it): the backlog is done
                self.backlog_active = False
                break
            if rd.seq < self.backlog_next:
                continue    # below the release point (a mark's cursor, a dropped range)
            if e.count & 7 == 7:
                # let the sampler and io run: building a whole batch is tens of ms on a device
                await asyncio.sleep_ms(0)
            wire.decode_into(s, self.rbuf, n)
            if first < 0:
                first = rd.seq
                e.begin(s)
            e.add(s)
            self.backlog_next = rd.seq + 1
        if first < 0:
            self.backlog_active = False
            self.backlog_next = self.catchup_end
            self._release()
            return False
        self.if_lo[slot] = first
        self.if_hi[slot] = self.backlog_next - 1
        self.if_used[slot] = 1
        if e.count == 1:
            # one sample: its single form, the same bytes as its live send (rbuf may hold the
            # record read past it, so encode it again)
            payload = memoryview(self.rbuf)[:wire.encode_into(self.rbuf, s)]
        else:
            payload = memoryview(self.bbuf)[:e.finish()]
            self.batches += 1
        self.batch_samples += e.count
        await asyncio.wait_for_ms(c.publish(self.topic_data, payload, slot + 1, qos=1),
                                  self.board.io_timeout_ms)
        return True

    async def _send_loop(self, c, reader):
        b = self.board
        last_tx = b.wall_ms()
        last_status = b.ticks_ms() - _STATUS_PERIOD_MS + 1000
        ka_ms = b.keepalive_s * 1000
        acked_before = self.pubacks
        mark_due = self.backlog_active
        while True:
            if reader.done():
                raise OSError("reader ended")
            if self.pubacks != acked_before:
                self.pubacks_this_link = 1
            sent = False
            # live first: the newest sample reaches the broker within a period, whatever the
            # backlog; one slot is kept free of backlog batches for it
            while True:
                slot = self._free_slot(0)
                if slot < 0 or not await self._publish_live(c, slot):
                    break
                sent = True
                last_tx = b.wall_ms()
            if self.backlog_active:
                slot = self._free_slot(1)
                if slot >= 0 and await self._publish_batch(c, slot):
                    sent = True
                    last_tx = b.wall_ms()
            elif mark_due and self.journal.depth() == 0:
                # a catch-up is complete: persist the cursor now rather than with the next
                # sample (one 12-byte record per catch-up; live samples need none, the next
                # append carries the cursor)
                self.journal.mark()
                mark_due = False
            if self.cfg_msgs:
                await asyncio.wait_for_ms(c.publish(self.topic_status, self.cfg_msgs.pop(0),
                                                    0, qos=0), b.io_timeout_ms)
            if ticks_diff(b.ticks_ms(), last_status) >= _STATUS_PERIOD_MS:
                last_status = b.ticks_ms()
                await asyncio.wait_for_ms(c.publish(self.topic_status, self.status_json(),
                                                    0, qos=0), b.io_timeout_ms)
                last_tx = b.wall_ms()
            if self.done and self.journal.depth() == 0:
                self.journal.mark()
                await c.disconnect()
                return True
            now = b.wall_ms()
            if ticks_diff(now, c.last_rx_ms) > ka_ms + ka_ms // 2:
                raise OSError("keepalive: broker silent")
            if ticks_diff(now, last_tx) > ka_ms // 2 and c.pings_outstanding == 0:
                await asyncio.wait_for_ms(c.ping(), b.io_timeout_ms)
                last_tx = now
            if not sent:
                self._wake.clear()
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), 200)
                except asyncio.TimeoutError:
                    pass

    # ---------------------------------------------------------------- status
    def status_json(self):
        return _cold("status").status_json(self)

    # ---------------------------------------------------------------- main
    async def main(self):
        b = self.board
        io = asyncio.create_task(self.io_task())
        up = asyncio.create_task(self.uplink_task())
        await self.sampler_task()
        # run_until reached (simulated patrol): wait until every sample is acknowledged
        self.done = True
        self._wake.set()
        deadline = b.wall_ms()
        while self.journal.depth() and ticks_diff(b.wall_ms(), deadline) < b.drain_timeout_ms:
            await asyncio.sleep_ms(50)
        j = self.journal
        _log(b, "done: samples=%d seq=%d..%d unacked=%d dropped=%d torn=%d reconnects=%d "
             "late_slots=%d batches=%d batch_samples=%d live=%d journal_bytes=%d"
             % (self.samples, self.seq_first, j.next_seq - 1, j.depth(), j.dropped,
                j.torn_tails, self.reconnects, self.late_slots, self.batches,
                self.batch_samples, self.live_sent, j.bytes_written))
        try:
            await asyncio.wait_for_ms(up, 5000)
        except Exception:  # noqa: BLE001
            pass
        io.cancel()
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
