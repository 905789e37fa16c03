# The box's application: one asyncio task per concern (Hinch's shape).
#
#   io       polls every driver's bus and disciplines the clock from GNSS fixes
#   sampler  at each grid second (UTC multiple of the period) requests, waits, fills, encodes and
#            appends one sample to the outbox; it never waits for the network
#   uplink   owns the MQTT connection; sends the outbox oldest first with QoS 1 and releases a
#            sample only on its PUBACK; reconnects with exponential backoff and jitter
#
# The board object (boards/<name>.py) supplies the clock, the drivers and the network settings.

import asyncio
import os

from . import wire
from .clock import Clock, SOURCE_GNSS
from .compat import ticks_diff
from .mqtt import MQTTClient

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_FREE = const(0)
_QUEUED = const(1)
_INFLIGHT = const(2)


def _log(board, msg):
    board.log(msg)


class Outbox:
    """Bounded queue of encoded samples awaiting PUBACK, oldest first, preallocated.

    A slot is released only when the broker acknowledged it. When full, the oldest sample is
    dropped and counted (dropped_oldest). Packet id of a slot = its index + 1, so a resend after a
    reconnect reuses the same id (MQTT 3.1.1 §4.4).
    """

    def __init__(self, slots, slot_bytes=wire.MAX_SAMPLE_BYTES):
        self.slots = slots
        self.data = [bytearray(slot_bytes) for _ in range(slots)]
        self.size = [0] * slots
        self.state = bytearray(slots)
        self.sent_before = bytearray(slots)   # 1 = sent on an earlier connection: resend with DUP
        self.head = 0        # oldest occupied slot
        self.count = 0
        self.dropped_oldest = 0
        self.appended = 0
        self.acked = 0

    def reserve(self):
        """Return the index of a free slot at the tail (dropping the oldest if full)."""
        if self.count == self.slots:
            self.state[self.head] = _FREE
            self.head = (self.head + 1) % self.slots
            self.count -= 1
            self.dropped_oldest += 1
        return (self.head + self.count) % self.slots

    def commit(self, i, n):
        self.size[i] = n
        self.state[i] = _QUEUED
        self.sent_before[i] = 0
        self.count += 1
        self.appended += 1

    def ack(self, pid):
        i = pid - 1
        if 0 <= i < self.slots and self.state[i] == _INFLIGHT:
            self.state[i] = _FREE
            self.acked += 1
            # advance the head over released slots
            while self.count and self.state[self.head] == _FREE:
                self.head = (self.head + 1) % self.slots
                self.count -= 1
            return True
        return False

    def requeue_inflight(self):
        """After a lost connection: everything in flight is sent again, with DUP set."""
        for k in range(self.count):
            i = (self.head + k) % self.slots
            if self.state[i] == _INFLIGHT:
                self.state[i] = _QUEUED
                self.sent_before[i] = 1

    def next_queued(self):
        for k in range(self.count):
            i = (self.head + k) % self.slots
            if self.state[i] == _QUEUED:
                return i
        return -1

    def inflight(self):
        n = 0
        for k in range(self.count):
            if self.state[(self.head + k) % self.slots] == _INFLIGHT:
                n += 1
        return n


class App:
    def __init__(self, board):
        self.board = board
        self.clock = Clock(board.ticks_ms)
        self.gnss = board.gnss
        self.sensors = board.sensors
        self.period_s = board.period_s
        dev = board.device_id
        self.device = dev
        self.sample = wire.Sample(dev)
        self.outbox = Outbox(board.outbox_slots)
        self.topic_data = b"envbox/v1/" + dev + b"/data"
        self.topic_status = b"envbox/v1/" + dev + b"/status"
        self.seq = 0
        self.samples = 0
        self.late_slots = 0
        self.reconnects = 0
        self.connected = False
        self.done = False
        self._wake = asyncio.Event()

    # ---------------------------------------------------------------- io
    async def io_task(self):
        b = self.board
        g = self.gnss
        clk = self.clock
        for d in self.sensors:
            d.start(b.ticks_ms())
        g.start(b.ticks_ms())
        while not self.done:
            now = b.ticks_ms()
            if g.poll(now):
                # the RMC/GGA of second fix_t_s2020 has just arrived: that second began now
                clk.set(g.fix_t_s2020, now, SOURCE_GNSS)
            for d in self.sensors:
                d.poll(now)
            await asyncio.sleep_ms(b.poll_ms)

    # ---------------------------------------------------------------- sampler
    async def sampler_task(self):
        b = self.board
        clk = self.clock
        g = self.gnss
        period = self.period_s
        next_t = -1
        while True:
            await asyncio.sleep_ms(b.poll_ms)
            if not clk.known():
                continue
            if next_t < 0:
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
        self.gnss.fill(s, t)
        s.seq = self.seq
        s.t_s2020 = t
        s.flags = wire.FLAG_CLOCK_FROM_GPS if self.clock.source == SOURCE_GNSS else 0
        ob = self.outbox
        i = ob.reserve()
        n = wire.encode_into(ob.data[i], s)
        ob.commit(i, n)
        self.seq += 1
        self.samples += 1
        self._wake.set()

    # ---------------------------------------------------------------- uplink
    def _on_puback(self, pid):
        if self.outbox.ack(pid):
            self._wake.set()

    async def uplink_task(self):
        b = self.board
        backoff = b.backoff_min_ms
        while True:
            c = MQTTClient(self.device, b.broker_host, b.broker_port,
                           keepalive_s=b.keepalive_s, clean_session=False,
                           user=b.mqtt_user, password=b.mqtt_password,
                           will_topic=self.topic_status, will_msg=b"offline", ssl=b.mqtt_ssl)
            c.on_puback = self._on_puback
            reader = None
            try:
                await c.connect(b.connect_timeout_ms)
                _log(b, "mqtt connected session_present=%d" % c.session_present)
                self.connected = True
                backoff = b.backoff_min_ms
                self.outbox.requeue_inflight()
                await c.publish(self.topic_status, b"online", 0, qos=0, retain=True)
                c.last_rx_ms = b.wall_ms()
                reader = asyncio.create_task(c.read_loop(b.wall_ms))
                await self._send_loop(c, reader)
                return   # clean finish (run_until reached and everything acknowledged)
            except Exception as e:  # noqa: BLE001 - any failure means: drop the link, retry
                _log(b, "mqtt link lost: %r" % (e,))
            finally:
                self.connected = False
                if reader:
                    reader.cancel()
                c.close()
            self.reconnects += 1
            self.outbox.requeue_inflight()
            # exponential backoff with jitter (wall time: this is the network's clock)
            j = os.urandom(1)[0] * backoff // 512
            await asyncio.sleep_ms(backoff // 2 + j)
            backoff = min(backoff * 2, b.backoff_max_ms)

    async def _send_loop(self, c, reader):
        b = self.board
        ob = self.outbox
        last_tx = b.wall_ms()
        ka_ms = b.keepalive_s * 1000
        while True:
            if reader.done():
                raise OSError("reader ended")
            sent = False
            while ob.inflight() < b.max_inflight:
                i = ob.next_queued()
                if i < 0:
                    break
                ob.state[i] = _INFLIGHT
                await c.publish(self.topic_data, memoryview(ob.data[i])[:ob.size[i]], i + 1,
                                qos=1, dup=bool(ob.sent_before[i]))
                last_tx = b.wall_ms()
                sent = True
            if self.done and ob.count == 0:
                await c.disconnect()
                return
            now = b.wall_ms()
            if ticks_diff(now, c.last_rx_ms) > ka_ms + ka_ms // 2:
                raise OSError("keepalive: broker silent")
            if ticks_diff(now, last_tx) > ka_ms // 2 and c.pings_outstanding == 0:
                await c.ping()
                last_tx = now
            if not sent:
                self._wake.clear()
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), 200)
                except asyncio.TimeoutError:
                    pass

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
        while self.outbox.count and ticks_diff(b.wall_ms(), deadline) < b.drain_timeout_ms:
            await asyncio.sleep_ms(50)
        _log(b, "done: samples=%d acked=%d unacked=%d dropped_oldest=%d reconnects=%d late_slots=%d"
             % (self.samples, self.outbox.acked, self.outbox.count, self.outbox.dropped_oldest,
                self.reconnects, self.late_slots))
        try:
            await asyncio.wait_for_ms(up, 5000)
        except Exception:  # noqa: BLE001
            pass
        io.cancel()


def run(board):
    app = App(board)
    asyncio.run(app.main())
    return app
