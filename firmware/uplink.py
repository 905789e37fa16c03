# The box's uplink: owns the MQTT session and sends what the journal holds.
#
#   live      the newest sample first, at once, one message each (the newest reaches the broker
#             within a period, whatever the backlog)
#   catch-up  every unacknowledged older sample, oldest first, in KIND_BATCH batches, in the
#             in-flight slots live traffic leaves free
#   release   a journaled sample is released only when a gateway acknowledges that it holds it
#             (wire.KIND_ACK on envbox/v1/<device>/ack/<gateway>, retained, so a reconnecting box
#             gets it at once); the broker's PUBACK only frees an in-flight slot (flow control)
#   resend    after a reconnect, and when sent samples stay unacknowledged for ack_timeout_ms
#             (doubling while no acknowledgement comes, up to ack_timeout_max_ms), everything not
#             acknowledged is sent again, newest first; the gateway stores a sample once
#   status    the health message every minute (firmware/status.py), config results
#   backoff   reconnects with exponential backoff and jitter; the link supervisor (board.link)
#             is told about every failure and owns the network itself
#   TLS       connects only once the clock is known and the board's RTC holds it (the TLS stack
#             checks the certificates' dates against the RTC, which reads its epoch after a power
#             cut): sampler.time_ok()
#
# The MQTT client comes from a factory (the app passes firmware/mqtt.py's; tests pass fakes), so
# the uplink's logic runs without a broker (tests/firmware/test_uplink.py).
# docs/firmware.md, "Uplink" and "End-to-end acknowledgement".

import asyncio
import os

from . import wire
from .compat import const, ticks_diff


_PID_SUBSCRIBE = const(0xFFF0)   # never one of the publish slots' ids (1..max_inflight)
_PID_SUBSCRIBE_ACK = const(0xFFF1)
_STATUS_PERIOD_MS = const(60000)


def _jitter_byte():
    try:
        return os.urandom(1)[0]
    except (AttributeError, OSError):     # no urandom on this port (the 32-bit test build)
        import random
        return random.getrandbits(8)


class Uplink:
    def __init__(self, board, journal, sampler, device, client_factory, status_json=None,
                 on_config=None, log=None):
        b = board
        self.board = b
        self.journal = journal
        self.sampler = sampler
        self.client_factory = client_factory
        self.status_json = status_json
        self.on_config = on_config
        self.log = log or b.log
        self.device = device
        self.topic_data = b"envbox/v1/" + device + b"/data"
        self.topic_status = b"envbox/v1/" + device + b"/status"
        self.topic_config = b"envbox/v1/" + device + b"/config"
        self.topic_ack = b"envbox/v1/" + device + b"/ack/+"
        self._ack_prefix = b"envbox/v1/" + device + b"/ack/"
        self.msgs = []              # status messages to send (config results), oldest first
        # buffers (preallocated)
        self.rbuf = bytearray(wire.MAX_SAMPLE_BYTES)
        self.bbuf = bytearray(b.batch_bytes)
        self.bsample = wire.Sample(device)
        self.benc = wire.BatchEncoder(self.bbuf, sampler.period_s)
        self.ack_lo = [0] * wire.MAX_ACK_RANGES
        self.ack_hi = [0] * wire.MAX_ACK_RANGES
        n = b.max_inflight
        self.if_used = bytearray(n)
        self.live = journal.reader()
        self.backlog = journal.reader()
        self.catchup_end = 0
        self.backlog_active = False
        self.backlog_next = 0
        self.live_next = 0
        # counters
        self.reconnects = 0
        self.pubacks = 0
        self.batches = 0
        self.batch_samples = 0
        self.live_sent = 0
        self.acks = 0               # acknowledgement messages received
        self.acks_bad = 0           # malformed ones (ignored)
        self.resends = 0            # sessions restarted because acknowledgements did not come
        self.unjournaled_sent = 0
        self.connected = False
        self.insecure = False
        self.tls_clock_wait_ms = -1  # board ms TLS waited for a clock (-1: it never had to)
        self.pubacks_this_link = 0
        self.done = False           # set by the app when sampling has ended (simulated patrols)
        self._ack_wait_ms = b.ack_timeout_ms
        self._progress_ms = 0       # wall ms of the last acknowledgement progress / session start
        self._released_seen = -1
        self._done_seen = False

    # ---------------------------------------------------------------- callbacks (reader task)
    def _on_puback(self, pid):
        i = pid - 1
        if 0 <= i < len(self.if_used) and self.if_used[i]:
            self.if_used[i] = 0
            self.pubacks += 1
            self.sampler.wake.set()

    def _on_message(self, topic, payload, retained):
        if topic.startswith(self._ack_prefix):
            self._on_ack(payload)
        elif topic == self.topic_config:
            if self.on_config is not None:
                msg = self.on_config(payload)
                if msg:
                    self.msgs.append(msg)

    def _on_ack(self, payload):
        if payload is None:
            self.acks_bad += 1
            return
        lo = self.ack_lo
        hi = self.ack_hi
        n = wire.decode_ack_into(payload, len(payload), lo, hi)
        if n < 0:
            self.acks_bad += 1
            return
        self.acks += 1
        j = self.journal
        before = j.released
        before_depth = j.depth()
        for k in range(n):
            j.ack(lo[k], hi[k])
        if j.released != before or j.depth() != before_depth:
            self._progress_ms = self.board.wall_ms()
            self._ack_wait_ms = self.board.ack_timeout_ms
        self.sampler.wake.set()

    # ---------------------------------------------------------------- session
    def _free_slot(self, reserve):
        n = 0
        k = -1
        for i in range(len(self.if_used)):
            if not self.if_used[i]:
                n += 1
                if k < 0:
                    k = i
        return k if n > reserve else -1

    def _in_flight(self):
        for i in range(len(self.if_used)):
            if self.if_used[i]:
                return True
        return False

    def start_session(self):
        """Send again everything not acknowledged: the newest journaled sample and every later
        one go live (one message each, at once); the backlog, every unacknowledged seq below
        catchup_end, goes in batches, oldest first, in the slots live samples leave free."""
        j = self.journal
        self.pubacks_this_link = 0
        self.backlog_next = j.released
        self._progress_ms = self.board.wall_ms()
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

    async def _publish(self, c, slot, payload):
        self.if_used[slot] = 1
        await asyncio.wait_for_ms(c.publish(self.topic_data, payload, slot + 1, qos=1),
                                  self.board.io_timeout_ms)

    async def _publish_live(self, c, slot):
        s = self.sampler
        if s.unjournaled_n:
            # a sample the flash could not take: straight from RAM (not resent if lost)
            n = s.unjournaled_n
            s.unjournaled_n = 0
            self.unjournaled_sent += 1
            if self.live_next <= s.unjournaled_seq:
                self.live_next = s.unjournaled_seq + 1
            await self._publish(c, slot, memoryview(s.unjournaled)[:n])
            return True
        while True:
            n = self.live.read(self.rbuf)
            if not n:
                return False
            self.live_next = self.live.seq + 1
            if not self.journal.covers(self.live.seq):
                break       # (an acknowledged one is not sent again)
        await self._publish(c, slot, memoryview(self.rbuf)[:n])
        self.live_sent += 1
        return True

    async def _publish_batch(self, c, slot):
        """Read unacknowledged backlog records up to catchup_end into one batch (or a single
        payload if only one is left) and publish it."""
        rd = self.backlog
        e = self.benc
        e.period_s = self.sampler.period_s
        s = self.bsample
        j = self.journal
        first = -1
        while e.count < self.board.batch_max_samples or first < 0:
            if first >= 0 and (not e.room() or j.next_seq > self.live_next):
                break   # full, or a new sample is waiting: send this batch, the live one next
            n = rd.read(self.rbuf)
            if not n:
                break
            if rd.seq >= self.catchup_end:
                # that record is a live one (the live reader has it): the backlog is done
                self.backlog_active = False
                break
            if rd.seq < self.backlog_next or j.covers(rd.seq):
                continue    # acknowledged meanwhile (or below the cursor): not again
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
            return False
        if e.count == 1:
            # one sample: its single form, the same bytes as its live send (rbuf may hold the
            # record read past it, so encode it again)
            payload = memoryview(self.rbuf)[:wire.encode_into(self.rbuf, s)]
        else:
            payload = memoryview(self.bbuf)[:e.finish()]
            self.batches += 1
        self.batch_samples += e.count
        await self._publish(c, slot, payload)
        return True

    def _ack_overdue(self):
        """Everything is sent and PUBACKed, some of it is not acknowledged by a gateway, and no
        acknowledgement has made progress for the current wait."""
        j = self.journal
        if self.backlog_active or self.live_next < j.next_seq or self._in_flight():
            return False
        if not j.depth():
            return False
        return ticks_diff(self.board.wall_ms(), self._progress_ms) > self._ack_wait_ms

    # ---------------------------------------------------------------- the connection
    async def run(self):
        b = self.board
        link = b.link
        backoff = b.backoff_min_ms
        while True:
            if link is not None and not link.up.is_set():
                await link.up.wait()
            self.pubacks_this_link = 0      # (a failed attempt carries no data: backoff grows)
            if b.mqtt_ssl is not None and not self.sampler.time_ok():
                # TLS: a certificate is valid from a date, checked against the RTC; a box that
                # believes it is 2000 refuses every one. Wait for the clock (status:
                # tls_clock_wait_s)
                t0 = b.ticks_ms()
                while not self.sampler.time_ok():
                    await asyncio.sleep_ms(200)
                self.tls_clock_wait_ms = ticks_diff(b.ticks_ms(), t0)
            c = self.client_factory(self)
            c.on_puback = self._on_puback
            c.on_message = self._on_message
            reader = None
            try:
                if link is not None:
                    # the name is looked up off the sampler's path (a non-blocking DNS query);
                    # TLS still checks the certificate against the name
                    ip = await link.resolve(b.broker_host)
                    if ip != c.host:
                        if c.server_hostname is None:
                            c.server_hostname = b.broker_host
                        c.host = ip
                await c.connect(b.connect_timeout_ms)
                if link is not None:
                    link.broker_ok()
                self.log("mqtt connected session_present=%d depth=%d"
                         % (c.session_present, self.journal.depth()))
                self.connected = True
                self.start_session()
                for i in range(len(self.if_used)):
                    self.if_used[i] = 0
                await asyncio.wait_for_ms(
                    c.publish(self.topic_status, b"online", 0, qos=0, retain=True),
                    b.io_timeout_ms)
                await asyncio.wait_for_ms(c.subscribe(self.topic_config, _PID_SUBSCRIBE),
                                          b.io_timeout_ms)
                await asyncio.wait_for_ms(c.subscribe(self.topic_ack, _PID_SUBSCRIBE_ACK, 0),
                                          b.io_timeout_ms)
                c.last_rx_ms = b.wall_ms()
                reader = asyncio.create_task(c.read_loop(b.wall_ms))
                if await self._send_loop(c, reader):
                    return   # clean finish (run_until reached and everything acknowledged)
                backoff = b.backoff_min_ms
            except Exception as e:  # noqa: BLE001 - any failure means: drop the link, retry
                self.log("mqtt link lost: %r" % (e,))
                if link is not None:
                    link.broker_failed()
            finally:
                self.connected = False
                if reader:
                    reader.cancel()
                c.close()
            if self.pubacks_this_link:
                backoff = b.backoff_min_ms   # the link carried data: not a storm, start low
            self.reconnects += 1
            # exponential backoff with jitter (wall time: this is the network's clock)
            await asyncio.sleep_ms(backoff // 2 + _jitter_byte() * backoff // 512)
            backoff = min(backoff * 2, b.backoff_max_ms)

    async def _send_loop(self, c, reader):
        b = self.board
        j = self.journal
        last_tx = b.wall_ms()
        last_status = b.ticks_ms() - _STATUS_PERIOD_MS + 1000
        ka_ms = b.keepalive_s * 1000
        acked_before = self.pubacks
        wake = self.sampler.wake
        link = b.link
        while True:
            if reader.done():
                raise OSError("reader ended: %s" % (getattr(c, "error", None),))
            if link is not None and not link.up.is_set():
                # the supervisor saw the network go (NO CARRIER, Wi-Fi lost): the session is
                # dead even if the socket has not noticed yet
                raise OSError("link down")
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
            elif self._ack_overdue():
                # the broker took everything, no gateway said it holds it: send it all again
                # (a broker that lost its queue, a gateway that was away), and wait longer
                # next time so an absent gateway does not cost the SIM plan a resend a minute
                self.resends += 1
                self.log("no acknowledgement for %d ms (depth %d): sending again"
                         % (self._ack_wait_ms, j.depth()))
                w = self._ack_wait_ms * 2
                self._ack_wait_ms = w if w < b.ack_timeout_max_ms else b.ack_timeout_max_ms
                self.start_session()
                continue
            if self.msgs:
                await asyncio.wait_for_ms(c.publish(self.topic_status, self.msgs.pop(0),
                                                    0, qos=0), b.io_timeout_ms)
            if self.status_json is not None and \
                    ticks_diff(b.ticks_ms(), last_status) >= _STATUS_PERIOD_MS:
                last_status = b.ticks_ms()
                await asyncio.wait_for_ms(c.publish(self.topic_status, self.status_json(),
                                                    0, qos=0), b.io_timeout_ms)
                last_tx = b.wall_ms()
            if self.done and not self._done_seen:
                # sampling has ended (a simulated patrol): what is left is resent on the short
                # wait again, not the long one a missing gateway had driven it to
                self._done_seen = True
                self._ack_wait_ms = b.ack_timeout_ms
            if self.done and j.depth() == 0 and not self.sampler.unjournaled_n:
                j.mark()          # persist the cursor: nothing is sent again after a restart
                await c.disconnect()
                return True
            now = b.wall_ms()
            if ticks_diff(now, c.last_rx_ms) > ka_ms + ka_ms // 2:
                raise OSError("keepalive: broker silent")
            if ticks_diff(now, last_tx) > ka_ms // 2 and c.pings_outstanding == 0:
                await asyncio.wait_for_ms(c.ping(), b.io_timeout_ms)
                last_tx = now
            if not sent:
                wake.clear()
                try:
                    await asyncio.wait_for_ms(wake.wait(), 200)
                except asyncio.TimeoutError:
                    pass
