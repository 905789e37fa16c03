"""End-to-end acknowledgements: after a spool commit, tell each box which of its samples the
gateway now holds durably (issue 9; docs/gateway.md "Acknowledgements to the boxes").

The box releases a journaled sample only when an acknowledgement covers it; the broker's PUBACK
only paces its sending. Only the endpoint that stores a sample can say it is stored: the broker
acknowledges a QoS 1 message before its persistence file is written, and loses what it accepted
in that window on a power cut.

What is acknowledged: the seq ranges of the box that are committed in this gateway's spool
(queued, written to InfluxDB or dead-lettered: a dead letter is held too, or the box would resend
it forever), read from the spool's per-device seq ranges after the commit that holds them, so
nothing uncommitted is ever acknowledged. Each acknowledgement lists the ranges that contain a
seq received since the box's previous one (wire.MAX_ACK_RANGES per message; more go out in
several messages); the box resends what stays uncovered and gets it acknowledged then (a resend
is a duplicate here).

Where: <data topic up to the device>/ack/<gateway_id>, QoS 0, retained, so a box that
reconnects gets the latest acknowledgement on subscribing, and several gateways sharing the fleet
through a $share subscription each keep their own (each acknowledges only what it received).

When (coalescing): a box is acknowledged once it has every_samples unacknowledged samples or its
oldest was committed max_delay_s ago; a box that sent a catch-up batch or a seq already held
(it is waiting for us) is acknowledged promptly; never more than once per min_interval_s.

Everything here runs in the ingest thread (committed() right after each commit, tick() whenever
ingest wakes), so it reads the spool's range cache without locks.
"""

from __future__ import annotations

import heapq
import logging
import time

from envbox.firmware import wire

from .config import Config, ack_gateway_id
from .metrics import Counters
from .spool import Accepted, Rejected, Spool

log = logging.getLogger("envbox.gateway.acks")

# Seqs remembered per box between two acknowledgements, to pick the ranges to send; beyond it
# the box's newest ranges are sent (a commit group of catch-up batches from one box).
MAX_MARKS = 1024


def publish_packet_bytes(topic_bytes: int, payload_bytes: int, qos: int = 0) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH on the wire: fixed header, remaining length (1-4 bytes),
    topic length and topic, packet id (QoS > 0 only), payload."""
    remaining = 2 + topic_bytes + (2 if qos else 0) + payload_bytes
    n = 1
    while remaining >= 128 ** n:
        n += 1
    return 1 + n + remaining


class _Box:
    __slots__ = ("n", "first_s", "urgent", "last_sent_s", "marks", "overflow", "due_s")

    def __init__(self):
        self.n = 0                # samples (seqs) committed since the last acknowledgement
        self.first_s = 0.0        # monotonic time of the first of them
        self.urgent = False       # a batch or a duplicate: the box waits for us
        self.last_sent_s = -1e18
        self.marks: set[int] = set()
        self.overflow = False
        self.due_s: float | None = None


class Acker:
    def __init__(self, cfg: Config, spool: Spool, counters: Counters, publish):
        """`publish(topic, payload) -> bool` sends one retained QoS 0 message (False: not
        connected; the acknowledgement stays due and is tried again)."""
        a = cfg.ack
        self.enabled = a.enabled
        self.every = a.every_samples
        self.max_delay_s = a.max_delay_s
        self.min_interval_s = a.min_interval_s
        self.gateway_id = ack_gateway_id(cfg)
        self._pre, self._post = cfg.mqtt.ack_topic_parts(self.gateway_id)
        self.spool = spool
        self.counters = counters
        self.publish = publish
        self._boxes: dict[str, _Box] = {}
        self._heap: list[tuple[float, str]] = []
        self._retry_s = 0.0

    def topic(self, device: str) -> str:
        return f"{self._pre}{device}{self._post}"

    # --- after a commit ---------------------------------------------------------------------

    def committed(self, items, batch_devices, dup_devices, now_s: float | None = None) -> None:
        """The group `items` (Accepted/Rejected) was committed: note each box's seqs."""
        if not self.enabled:
            return
        now_s = time.monotonic() if now_s is None else now_s
        boxes = self._boxes
        touched = {}
        for it in items:
            if type(it) is Accepted:
                dev = it.device
            elif isinstance(it, Rejected) and it.count_seq and it.device is not None \
                    and it.seq is not None:
                dev = it.device            # a dead letter whose seq the spool counted: held
            else:
                continue
            b = touched.get(dev)
            if b is None:
                b = boxes.get(dev)
                if b is None:
                    b = boxes[dev] = _Box()
                touched[dev] = b
                if b.n == 0:
                    b.first_s = now_s
            b.n += 1
            if not b.overflow:
                b.marks.add(it.seq)
                if len(b.marks) > MAX_MARKS:
                    b.overflow = True
                    b.marks.clear()
        for dev in batch_devices:
            b = touched.get(dev)
            if b is not None:
                b.urgent = True
        for dev in dup_devices:
            b = touched.get(dev)
            if b is not None:
                b.urgent = True
        for dev, b in touched.items():
            self._schedule(dev, b, now_s)

    def _schedule(self, dev: str, b: _Box, now_s: float) -> None:
        if b.n == 0:
            b.due_s = None
            return
        due = now_s if (b.urgent or b.n >= self.every) else b.first_s + self.max_delay_s
        due = max(due, b.last_sent_s + self.min_interval_s)
        if b.due_s is None or due < b.due_s:
            b.due_s = due
            heapq.heappush(self._heap, (due, dev))

    # --- sending ----------------------------------------------------------------------------

    def next_due_s(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def tick(self, now_s: float | None = None) -> int:
        """Send the acknowledgements that are due; return how many were sent."""
        if not self._heap:
            return 0
        now_s = time.monotonic() if now_s is None else now_s
        if now_s < self._retry_s:
            return 0
        sent = 0
        heap = self._heap
        while heap and heap[0][0] <= now_s:
            due, dev = heapq.heappop(heap)
            b = self._boxes.get(dev)
            if b is None or b.due_s is None or b.due_s != due:
                continue               # superseded by an earlier schedule, or already sent
            if not self._send(dev, b, now_s):
                heapq.heappush(heap, (due, dev))
                self._retry_s = now_s + 0.5   # not connected: try again in a while
                break
            sent += 1
        return sent

    def flush(self) -> int:
        """Send every pending acknowledgement now (the gateway is stopping)."""
        if not self.enabled:
            return 0
        now_s = time.monotonic()
        sent = 0
        for dev, b in list(self._boxes.items()):
            if b.n and self._send(dev, b, now_s):
                sent += 1
        self._heap.clear()
        return sent

    def _send(self, dev: str, b: _Box, now_s: float) -> bool:
        if b.overflow:
            ranges = self.spool.held_ranges_newest(dev, wire.MAX_ACK_RANGES)
        else:
            ranges = self.spool.held_ranges(dev, b.marks)
        # One message names at most MAX_ACK_RANGES ranges. Seqs spread over more (a box whose
        # samples alternate between gateways of a $share group, in a burst) go out in several
        # messages, the newest last, so the retained one is the newest.
        k = wire.MAX_ACK_RANGES
        chunks = [ranges[i:i + k] for i in range(0, len(ranges), k)]
        topic = self.topic(dev)
        tb = len(topic.encode())
        for n, chunk in enumerate(chunks):
            payload = wire.encode_ack(chunk)
            try:
                ok = self.publish(topic, payload)
            except Exception:  # noqa: BLE001 - an ack is an optimisation of the box's resend
                log.exception("publishing the acknowledgement for %s", dev)
                ok = False
            if not ok:
                self.counters.add("ack_publish_failed")
                if n == 0:
                    return False
                break          # sent in part: the box resends the rest and hears of it then
            self.counters.add("acks_sent")
            self.counters.add("ack_bytes", publish_packet_bytes(tb, len(payload)))
        if not chunks:
            # seqs at or above 2^30 - 1 only: the 30-bit acknowledgement cannot name them
            self.counters.add("ack_unrepresentable")
        b.n = 0
        b.urgent = False
        b.overflow = False
        b.marks = set()
        b.last_sent_s = now_s
        b.due_s = None
        return True

    def pending(self) -> int:
        """Boxes with samples committed and not yet acknowledged."""
        return sum(1 for b in self._boxes.values() if b.n)
