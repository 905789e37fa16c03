"""Gateway ingest: MQTT (persistent session, QoS 1, manual ack) -> validation -> spool.

Threads: paho's network thread only queues each message (mid, qos, topic, payload) in memory and
returns; it never acknowledges. The committer thread takes a group of messages (up to
commit_max_messages, or what arrived within commit_max_ms of the first), decodes and validates
them, stores the group in one spool transaction and, only after COMMIT returned, sends the
PUBACKs in the order the messages arrived (MQTT requires that order). A crash at any point before
the commit leaves the messages unacknowledged, so the broker redelivers them on reconnect; a crash
between commit and PUBACK makes a redelivery that the spool's UNIQUE key and the seq ranges
recognise as a duplicate.

Why a group commit: one fsync per message (synchronous=FULL) caps ingest at the disk's fsync rate
(tens to hundreds per second on an SD card); a group of up to 500 amortises it. The group never
exceeds the broker's in-flight window (Receive Maximum), which would stall delivery.

Acks are tied to the connection a message came on: after a reconnect, a packet id from the old
connection may name a different message on the new one, so stale acks are skipped (the broker
redelivers those messages; the spool ignores the copies).
"""

from __future__ import annotations

import collections
import logging
import random
import re
import struct
import threading
import time
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from envbox.firmware import wire

from .acks import Acker
from .config import Config, MqttConfig
from .metrics import Counters
from .ratelog import RateLimited
from .spool import Accepted, Rejected, Spool

log = logging.getLogger("envbox.gateway.ingest")
_warn = RateLimited(log)

# A box whose clock was never set stamps t_s2020 = 0 (2020-01-01T00:00:00Z): not a real time.
MIN_T_UTC_S = wire.EPOCH_2020_UNIX_S + 1

# wire's decoders load on first use through the module's __getattr__ (firmware/wire.py: they
# stay off the box's heap); each `wire.decode` then costs an import statement, 1.3 us, once per
# live sample. Bound here once.
_decode, _decode_many, _singles = wire.decode, wire.decode_many, wire.singles


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_message(topic: str, payload: bytes, device_index: int, now: float,
                  max_future_s: float, received_at: float | None = None,
                  max_past_s: float = 0) -> Accepted | Rejected:
    """Decode and validate one message. Never raises: anything wrong becomes a Rejected with a
    reason (malformed payloads have a reason starting with "malformed:"). max_past_s > 0
    refuses samples older than that as too old."""
    received_at = now if received_at is None else received_at
    payload = bytes(payload)
    levels = topic.split("/")
    topic_dev = levels[device_index] if len(levels) > device_index else None
    try:
        d = _decode(payload)
    except wire.WireError as e:
        return Rejected(topic, f"malformed: {e}", payload, received_at, device=topic_dev)
    except Exception as e:  # noqa: BLE001 - a decoder bug must dead-letter, not kill ingest
        return Rejected(topic, f"malformed: decoder raised {type(e).__name__}: {e}", payload,
                        received_at, device=topic_dev)
    return _check_fields(topic, payload, topic_dev, d["device"], d["seq"], d["t_utc_s"], now,
                         max_future_s, received_at, max_past_s)


def _check_fields(topic, payload, topic_dev, dev, seq, t, now, max_future_s, received_at,
                  max_past_s=0):
    """The checks on a decoded sample: its device is the topic's, its time plausible."""
    if dev != topic_dev:
        return Rejected(topic, f"device mismatch: topic says {topic_dev!r}, payload says {dev!r}",
                        payload, received_at, device=topic_dev, seq=seq, t_utc_s=t)
    if t > now + max_future_s:
        return Rejected(topic, f"timestamp {_iso(t)} is {t - now:.0f} s ahead of the gateway "
                        f"clock (limit {max_future_s:.0f} s)", payload, received_at,
                        device=dev, seq=seq, t_utc_s=t, count_seq=True)
    if t < MIN_T_UTC_S:
        return Rejected(topic, f"timestamp {_iso(t)}: the box's clock was not set", payload,
                        received_at, device=dev, seq=seq, t_utc_s=t, count_seq=True)
    if max_past_s and t < now - max_past_s:
        return Rejected(topic, f"too old: timestamp {_iso(t)} is {(now - t) / 86400:.1f} days "
                        f"before the gateway clock (limit {max_past_s / 86400:.1f} days)",
                        payload, received_at, device=dev, seq=seq, t_utc_s=t, count_seq=True)
    return Accepted(dev, seq, t, payload, received_at, topic)


_KIND_BATCH = bytes([wire.KIND_BATCH])
_PUBACK = 0x40


def check_payload(topic: str, payload: bytes, device_index: int, now: float,
                  max_future_s: float, received_at: float | None = None,
                  max_past_s: float = 0) -> list[Accepted | Rejected]:
    """Decode and validate one message of either payload kind into one verdict per sample.
    Never raises.

    KIND_SAMPLE: [check_message(...)]. KIND_BATCH (a box's catch-up): the batch is split into
    the single-sample payloads it stands for (wire.singles: the bytes the box would have sent one
    by one), and each is checked like a live sample, so the spool stores, writes and requeues
    batched samples exactly like live ones. A bad sample inside a good batch (time implausible,
    device not the topic's) becomes a Rejected of its own, its single payload as the dead
    letter, the reason prefixed with "batch sample i/n: "; the other samples are accepted. A batch
    that does not decode as a whole is one Rejected with the batch bytes ("malformed: batch: ...").
    """
    payload = bytes(payload)
    if payload[:1] != _KIND_BATCH:
        return [check_message(topic, payload, device_index, now, max_future_s, received_at,
                              max_past_s)]
    received_at = now if received_at is None else received_at
    parts = _singles(payload)
    if len(parts) == 1 and parts[0] is payload:
        # singles() hands back malformed batches unchanged; decode_many says what is wrong.
        levels = topic.split("/")
        topic_dev = levels[device_index] if len(levels) > device_index else None
        try:
            _decode_many(payload)
            reason = "malformed: batch: not split by wire.singles"   # a decoder disagreement
        except wire.WireError as e:
            reason = f"malformed: batch: {e}"
        except Exception as e:  # noqa: BLE001 - a decoder bug must dead-letter, not kill ingest
            reason = f"malformed: batch: decoder raised {type(e).__name__}: {e}"
        return [Rejected(topic, reason, payload, received_at, device=topic_dev)]
    n = len(parts)
    out = []
    levels = topic.split("/")
    topic_dev = levels[device_index] if len(levels) > device_index else None
    id_len = payload[1]
    dev_bytes = payload[2:2 + id_len]
    fast = _PRINTABLE_ID.fullmatch(dev_bytes) is not None
    dev = dev_bytes.decode() if fast else None
    for i, single in enumerate(parts):
        if fast and _LONG_VARINT.search(single) is None:
            # See _LONG_VARINT: wire.decode(single) would succeed, so its fields are read
            # straight from their fixed offsets (seq, time) instead of decoding the sample again.
            seq, t2020 = _SEQ_T.unpack_from(single, 2 + id_len)
            v = _check_fields(topic, single, topic_dev, dev, seq, t2020 + wire.EPOCH_2020_UNIX_S,
                              now, max_future_s, received_at, max_past_s)
        else:
            v = check_message(topic, single, device_index, now, max_future_s, received_at,
                              max_past_s)
        if isinstance(v, Rejected):
            v.reason = f"batch sample {i + 1}/{n}: {v.reason}"
        out.append(v)
    return out


# Checking the singles of a batch without decoding each one again (profiled: decoding them was a
# third of the gateway's CPU per batched sample). wire.singles() lays out each single as
# wire.encode() would, from fields the batch decoder has already checked: kind, lengths, mask and
# statuses are right by construction, and every field except the device id and the channel
# values is range-checked by its struct packing. wire.decode() of such a single can only
# fail on (a) a device id byte outside printable ASCII or one of / + # (the batch decoder does
# not check the id; it is checked once per batch here), or (b) a channel value whose varint is
# longer than the 6 bytes decode() accepts (values summed from a hostile batch's differences):
# such a varint is a run of at least 6 bytes with the high bit set, which _LONG_VARINT finds.
# It also finds harmless runs (fixed fields with high bits), for which the single is then just
# decoded as a live sample is. tests/test_gateway_ingest.py compares both paths on random batches.
_PRINTABLE_ID = re.compile(rb"[\x21-\x22\x24-\x2a\x2c-\x2e\x30-\x7e]{1,32}")  # no # + /
_LONG_VARINT = re.compile(rb"[\x80-\xff]{6}")
_SEQ_T = struct.Struct(">II")


class _PubackCounter(collections.deque):
    """paho's queue of outgoing packets, counting the PUBACKs that left it for the socket:
    _packet_write pops a packet, writes it, and puts it back (appendleft) if the socket took
    only part of it or failed. So a PUBACK popped and not put back was written whole; that, not
    the ack() call, is what `acked` counts. `pending()` is the PUBACKs queued and not yet
    written (each counter here is changed by one thread only: `appended` by the committer,
    which alone queues PUBACKs, the others by paho's network thread)."""

    def __init__(self, counters: Counters):
        super().__init__()
        self.counters = counters
        self.appended = 0
        self.written = 0
        self.dropped = 0          # queued on a connection that was lost before they left

    def append(self, p):
        if p["command"] & 0xF0 == _PUBACK:
            self.appended += 1
        super().append(p)

    def popleft(self):
        p = super().popleft()
        if p["command"] & 0xF0 == _PUBACK:
            self.written += 1
            self.counters.add("acked")
        return p

    def appendleft(self, p):
        if p["command"] & 0xF0 == _PUBACK:
            self.written -= 1
            self.counters.add("acked", -1)
        super().appendleft(p)

    def clear(self):
        self.dropped += sum(1 for p in list(self) if p["command"] & 0xF0 == _PUBACK)
        super().clear()

    def pending(self) -> int:
        return self.appended - self.written - self.dropped


class CountingClient(mqtt.Client):
    """paho's Client whose outgoing queue counts the PUBACKs written (_PubackCounter). paho
    2.x creates the queue once (and clears it on reconnect); the property keeps ours in place
    if a release assigns a new one."""

    counters: Counters | None = None

    @property
    def _out_packet(self):
        return self.__dict__["_outq"]

    @_out_packet.setter
    def _out_packet(self, q):
        if self.counters is None:
            self.__dict__["_outq"] = q
            return
        ours = _PubackCounter(self.counters)
        ours.extend(q)
        self.__dict__["_outq"] = ours

    def count_pubacks(self, counters: Counters) -> None:
        self.counters = counters
        self._out_packet = self.__dict__["_outq"]


class ReadBufferedClient(CountingClient):
    """paho's Client, reading the socket in large chunks.

    paho reads each packet with three or more recv() calls (the command byte, each byte of the
    remaining length, the body) and returns to select() after every packet. Profiled at a few
    thousand messages/s, that is a system call, and a GIL hand-off to the ingest and writer
    threads, every few bytes. Here paho's small reads are served from one recv() of up to 64
    KiB, and every packet already buffered is handled before paho's loop selects again. Only
    the private _sock_recv and the public loop_read are overridden; Ingest falls back to the
    plain Client when a paho release renames _sock_recv. Bytes buffered from a connection are
    dropped with it (their messages were never acknowledged, so the broker sends them again).
    """

    RECV_BYTES = 65536

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rsock:     # a new connection: nothing buffered is its
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, self.RECV_BYTES))
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data
            self._rbuf, self._rpos = data, 0
        p = self._rpos
        out = self._rbuf[p:p + bufsize]
        self._rpos = p + len(out)
        return out

    def buffered(self) -> int:
        """Bytes received from the broker that paho has not parsed yet."""
        return len(self._rbuf) - self._rpos if self._sock is self._rsock else 0

    def loop_read(self, max_packets: int = 1):
        rc = super().loop_read(max_packets)
        # Select would not wake for bytes already in our buffer: handle them now. Between
        # packets, write what is waiting (the PUBACKs of a group that just committed): a burst
        # must not hold them back until the buffer runs dry (issue 11: 21,499 pending, none
        # sent for 2.8 s, and a SIGKILL then redelivered 11,000 committed messages).
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self.buffered():
            if self._out_packet:
                rc = self.loop_write()
                if rc != mqtt.MQTT_ERR_SUCCESS or self._sock is None:
                    break
            rc = super().loop_read(1)
        return rc


class Inbox:
    """The bounded queue between paho's network thread and the committer: at most
    `max_messages` messages and `max_bytes` payload bytes (one larger message is let in alone).
    When it is full, put() waits, so the network thread stops reading the socket and the broker
    keeps the rest (TCP flow control): a gateway catching up on a long backlog holds a bounded
    number of received-but-uncommitted messages, however many the broker sends (mosquitto does
    not hold its in-flight window: issue 11). While it waits it lets `idle()` run (the network
    thread writes the PUBACKs of the groups committing meanwhile).

    The committer takes a whole commit group at once (take()) and sleeps until the group is
    complete or its time is up: the network thread wakes it only then, not for every message
    (profiled live: a wake-up per message, each a GIL hand-off between the two threads, cost
    more than the queue itself)."""

    def __init__(self, max_messages: int, max_bytes: int):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._dq: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.bytes = 0
        self.samples = 0
        self.peak_messages = 0
        self.full_waits = 0
        # what the waiting committer needs before it wants waking: (messages, samples); None
        # while it does not wait
        self._want: tuple[int, int] | None = None
        self._putters = 0             # network threads waiting for room

    def __len__(self) -> int:
        return len(self._dq)

    def put(self, item, nbytes: int, nsamples: int = 1, idle=None, keep_waiting=None) -> bool:
        """Queue `item` (`nbytes` payload bytes carrying `nsamples` samples); wait while full.
        False if keep_waiting() said to give up."""
        waited = False
        while True:
            with self._lock:
                n = len(self._dq)
                if n == 0 or (n < self.max_messages and self.bytes + nbytes <= self.max_bytes):
                    self._dq.append((item, nbytes, nsamples))
                    self.bytes += nbytes
                    self.samples += nsamples
                    if n + 1 > self.peak_messages:
                        self.peak_messages = n + 1
                    want = self._want
                    if want is not None and (n + 1 >= want[0] or self.samples >= want[1]):
                        self._not_empty.notify()
                    return True
                if not waited:
                    self.full_waits += 1
                    waited = True
                if self._want is not None:
                    self._not_empty.notify()      # full: the committer takes what there is
                self._putters += 1
                try:
                    self._not_full.wait(0.05)
                finally:
                    self._putters -= 1
            if keep_waiting is not None and not keep_waiting():
                return False
            if idle is not None:
                idle()

    def poke(self) -> None:
        """Wake a put() waiting for room, so it runs its idle() now (the committer wants the
        PUBACKs written before its next commit)."""
        with self._lock:
            self._not_full.notify_all()

    def take(self, max_messages: int, max_samples: int, window_s: float,
             first_timeout_s: float) -> list:
        """A commit group, oldest first: up to `max_messages` messages, or messages carrying
        `max_samples` samples (the message that reaches it included), or what arrived within
        `window_s` of the first; [] if nothing came within `first_timeout_s`."""
        group: list = []
        samples = 0
        dq = self._dq
        with self._lock:
            if not dq:
                self._want = (1, 1)
                try:
                    self._not_empty.wait(first_timeout_s)
                finally:
                    self._want = None
                if not dq:
                    return group
            deadline = time.monotonic() + window_s
            while True:
                while dq and len(group) < max_messages and samples < max_samples:
                    item, nbytes, nsamples = dq.popleft()
                    self.bytes -= nbytes
                    self.samples -= nsamples
                    group.append(item)
                    samples += nsamples
                if self._putters:
                    self._not_full.notify_all()   # room made
                if len(group) >= max_messages or samples >= max_samples:
                    return group
                left = deadline - time.monotonic()
                if left <= 0:
                    return group
                self._want = (max_messages - len(group), max_samples - samples)
                try:
                    self._not_empty.wait(left)
                finally:
                    self._want = None


def _samples_in(payload: bytes) -> int:
    """How many samples a message carries (a KIND_BATCH's count byte; 1 otherwise), without
    decoding it: for sizing commit groups."""
    if payload[:1] == _KIND_BATCH and len(payload) > 2:
        i = 2 + payload[1] + 9
        if i < len(payload):
            return payload[i] or 1
    return 1


def make_client(m: MqttConfig) -> mqtt.Client:
    """The gateway's paho client for [mqtt]: protocol and persistent session, credentials, TLS,
    reconnect delays; not connected yet (Ingest.start connects it). A ReadBufferedClient, or a
    CountingClient when a paho release renamed what ReadBufferedClient overrides."""
    cls = ReadBufferedClient if hasattr(mqtt.Client, "_sock_recv") else CountingClient
    if m.protocol == "3.1.1":
        # clean_session=False with our fixed client id: a persistent session, kept by the
        # broker until its persistent_client_expiration.
        c = cls(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=mqtt.MQTTv311,
                clean_session=False, manual_ack=True, reconnect_on_failure=True)
    else:
        c = cls(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=mqtt.MQTTv5,
                manual_ack=True, reconnect_on_failure=True)
    if m.username:
        c.username_pw_set(m.username, m.password or None)
    if m.tls or m.tls_ca_file or m.tls_cert_file:
        c.tls_set(ca_certs=m.tls_ca_file or None, certfile=m.tls_cert_file or None,
                  keyfile=m.tls_key_file or None)
        if m.tls_insecure:
            c.tls_insecure_set(True)
    c.reconnect_delay_set(int(max(1, m.reconnect_min_s)), int(max(1, m.reconnect_max_s)))
    return c


class Ingest:
    """MQTT -> spool. `client`: a paho Client to use instead of make_client(cfg.mqtt) (tests;
    another transport). It must be built for cfg.mqtt's protocol and session (3.1.1: client id
    and clean_session=False); Ingest turns on its manual acknowledgements, sets its callbacks
    and connects it to [mqtt] host and port in start()."""

    def __init__(self, cfg: Config, spool: Spool, counters: Counters,
                 client: mqtt.Client | None = None):
        self.cfg = cfg
        self.spool = spool
        self.counters = counters
        ing = cfg.ingest
        self._q = Inbox(ing.queue_max_messages, ing.queue_max_bytes)
        self.in_commit = 0                 # messages of the group being committed
        self.held_peak = 0                 # most messages received and not yet committed
        self._gen = 0                      # connection generation; bumped on every disconnect
        self._gen_lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()   # SUBACK received on the current connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ever_connected = spool.had_mqtt_session()
        self.session_present: bool | None = None
        self.last_commit_s: float | None = None   # time.time() of the last spool commit
        self.spool_failing_since_s: float | None = None   # first failed commit in a row
        self.client = self._attach(client if client is not None else make_client(cfg.mqtt))
        self.acker = Acker(cfg, spool, counters, self._publish_ack)

    # --- MQTT -------------------------------------------------------------------------------

    def _attach(self, c: mqtt.Client) -> mqtt.Client:
        """Make `c` this ingest's client: manual acknowledgements (the PUBACK only after the
        commit, whatever the client was built with), PUBACKs counted as they are written (a
        CountingClient), our callbacks."""
        c.manual_ack_set(True)
        if isinstance(c, CountingClient):
            c.count_pubacks(self.counters)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        # paho re-raises callback exceptions out of its loop thread, which then dies silently;
        # every callback here catches its own, but keep paho from dying on any we missed.
        c.suppress_exceptions = True
        return c

    def _connect_props(self) -> Properties:
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = self.cfg.mqtt.session_expiry_s
        p.ReceiveMaximum = self.cfg.mqtt.receive_maximum
        return p

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        try:
            if reason_code.is_failure:
                log.error("MQTT connect refused: %s", reason_code)
                return
            self.counters.add("connects")
            self.session_present = bool(flags.session_present)
            if not flags.session_present:
                self.counters.add("session_missing")
                if self._ever_connected:
                    log.warning("MQTT: the broker had no session for client id %r: messages "
                                "queued for us while we were away (if any) are lost; check the "
                                "broker's persistence and persistent_client_expiration",
                                self.cfg.mqtt.client_id)
                else:
                    log.info("MQTT: new session for client id %r", self.cfg.mqtt.client_id)
            else:
                log.info("MQTT: resumed session for client id %r", self.cfg.mqtt.client_id)
            # Subscribing again on a resumed session is harmless, and needed for shared
            # subscriptions on mosquitto < 2.0.12, which forgets them on reconnect.
            client.subscribe(self.cfg.mqtt.subscription(), qos=1)
            self._connected.set()
        except Exception:  # noqa: BLE001
            self.counters.add("callback_errors")
            log.exception("on_connect")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        try:
            if any(rc.is_failure for rc in reason_codes):
                log.error("MQTT subscribe to %s refused: %s", self.cfg.mqtt.subscription(),
                          reason_codes)
                return
            if not self._ever_connected:
                self._record_connect()
            self._ever_connected = True
            self._subscribed.set()
        except Exception:  # noqa: BLE001
            self.counters.add("callback_errors")
            log.exception("on_subscribe")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._gen_lock:
            self._gen += 1
        self._connected.clear()
        self._subscribed.clear()
        self.counters.add("disconnects")
        if not self._stop.is_set():
            log.warning("MQTT disconnected: %s (paho reconnects)", reason_code)

    def _on_message(self, client, userdata, msg):
        if self._stop.is_set():
            # Stopping: take nothing new, so the committer can finish what it has. The message
            # stays unacknowledged and the broker sends it again on our next connection.
            return
        try:
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                topic = msg._topic.decode("utf-8", "replace")
            gen = self._gen
            payload = msg.payload
            item = (gen, msg.mid, msg.qos, topic, payload, time.time())
            # Blocks while the inbox is full: paho's network thread then reads no more from the
            # socket (writing our PUBACKs meanwhile), until the committer made room, we stop, or
            # the connection is gone (the broker sends the message again on the next one).
            if self._q.put(item, len(payload), _samples_in(payload), idle=client.loop_write,
                           keep_waiting=lambda: not self._stop.is_set() and self._gen == gen):
                held = len(self._q) + self.in_commit
                if held > self.held_peak:
                    self.held_peak = held
        except Exception:  # noqa: BLE001 - the message stays unacked and will be redelivered
            self.counters.add("callback_errors")
            log.exception("on_message")

    def _publish_ack(self, topic: str, payload: bytes) -> bool:
        if not self._connected.is_set():
            return False
        info = self.client.publish(topic, payload, qos=0, retain=True)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        m = self.cfg.mqtt
        self._thread = threading.Thread(target=self._run, name="gw-ingest", daemon=True)
        self._thread.start()
        # clean_start=False + a session expiry: the broker keeps our subscription and queues
        # QoS 1 messages while we are away, across gateway restarts (paho's default,
        # MQTT_CLEAN_START_FIRST_ONLY, would wipe it on every process start).
        # (3.1.1: clean_session=False was given to the Client.)
        if m.protocol == "3.1.1":
            self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        else:
            self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s,
                                      clean_start=False, properties=self._connect_props())
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker acknowledged our subscription (tests, demo)."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what has arrived, then disconnect."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    # --- committer --------------------------------------------------------------------------

    def _take_group(self) -> list:
        ing = self.cfg.ingest
        return self._q.take(ing.commit_max_messages, ing.commit_max_samples,
                            ing.commit_max_ms / 1000, 0.1)

    def _run(self) -> None:
        acker = self.acker
        while True:
            stopping = self._stop.is_set()
            group = self._take_group()
            if group:
                self.in_commit = len(group)
                self._commit_group(group)
                self.in_commit = 0
            elif stopping:
                try:
                    acker.flush()      # what is committed is acknowledged before we leave
                except Exception:  # noqa: BLE001
                    log.exception("flushing acknowledgements")
                return
            try:
                acker.tick()
            except Exception:  # noqa: BLE001 - the box resends what we fail to acknowledge
                self.counters.add("callback_errors")
                log.exception("acknowledgements")

    def _commit_group(self, group) -> None:
        ing = self.cfg.ingest
        idx = self.cfg.mqtt.device_index()
        now = time.time()
        # One message may carry many samples (a KIND_BATCH catch-up); all of them go into this
        # group's one transaction, so a message is acknowledged only after every one of its
        # samples (or its dead letter) is committed.
        items = []
        batches = 0
        batch_devices = set()
        for (_g, _mid, _qos, topic, payload, rx) in group:
            verdicts = check_payload(topic, payload, idx, now, ing.max_future_s, rx,
                                     ing.max_past_s)
            if payload[:1] == _KIND_BATCH:
                batches += 1
                batch_devices.add(verdicts[0].device)
            items.extend(verdicts)
        # The previous group's PUBACKs leave before this group commits, so they lag the commits
        # by at most one group (and a SIGKILL makes the broker redeliver at most one group of
        # committed messages): paho's network thread writes them between the packets it reads.
        self._wait_pubacks_written()
        delay = 0.1
        while True:
            try:
                t_commit = time.perf_counter()
                res = self.spool.ingest(items, now)
                self.counters.add("commits")
                self.counters.add("commit_us", int((time.perf_counter() - t_commit) * 1e6))
                self.spool_failing_since_s = None
                break
            except Exception as e:  # noqa: BLE001 - disk full, I/O error, locked: keep trying
                self.counters.add("spool_errors")
                if self.spool_failing_since_s is None:
                    self.spool_failing_since_s = time.time()
                log.error("spool commit failed (%s); %d messages stay unacknowledged, retrying",
                          e, len(items))
                if self._stop.wait(delay):
                    return   # shutting down: the broker redelivers them next time
                delay = min(delay * 2, 5.0) * random.uniform(0.8, 1.2)
        self.last_commit_s = time.time()
        c = self.counters
        c.add("received", len(group))
        c.add("received_batches", batches)
        c.add("received_samples", sum(1 for it in items if not (
            isinstance(it, Rejected) and it.reason.startswith("malformed:"))))
        c.add("spooled", res.spooled)
        c.add("duplicates", res.duplicates)
        c.add("dropped_oldest", res.dropped_oldest)
        malformed = too_old = 0
        for it in res.rejected:
            r = it.reason
            if r.startswith("malformed:"):
                malformed += 1
            elif r.startswith("too old:") or ": too old:" in r:
                too_old += 1
            # a flood of garbage must not flood the log: a few lines per kind, then a count
            kind = r.split(": ", 1)[1] if r.startswith("batch sample ") else r
            _warn(kind.split()[0], "dead letter from %s: %s", it.topic, r)
        c.add("malformed", malformed)
        c.add("rejected", res.dead_lettered - malformed - res.conflicts)
        c.add("too_old", too_old)
        c.add("conflicts", res.conflicts)
        c.add("dead_lettered", res.dead_lettered)
        # Only now that the group is committed may the broker forget it.
        acked = skipped = 0
        with self._gen_lock:
            gen = self._gen
            for (g, mid, qos, *_rest) in group:
                if qos == 0:
                    continue
                if g == gen:
                    self.client.ack(mid, qos)
                    acked += 1
                else:
                    skipped += 1
        c.add("ack_queued", acked)    # `acked` counts them as they are written (_PubackCounter)
        c.add("ack_skipped", skipped)
        # Now the boxes may hear which of their samples we hold (sent when due: acks.py).
        self.acker.committed(items, batch_devices, res.dup_devices or ())

    def _wait_pubacks_written(self, timeout_s: float = 1.0) -> None:
        q = self.client._out_packet
        if not isinstance(q, _PubackCounter) or q.pending() <= 0:
            return
        gen = self._gen
        deadline = time.monotonic() + timeout_s
        self._q.poke()          # a network thread waiting for room writes them at once
        while q.pending() > 0 and self._gen == gen and self._connected.is_set():
            if time.monotonic() > deadline:
                self.counters.add("puback_waits_timed_out")
                return
            time.sleep(0.0005)

    def _record_connect(self) -> None:
        # Remember in the spool that this client id has had a session, so that a later start
        # that finds none can say so (see _on_connect).
        try:
            self.spool.record_mqtt_session()
        except Exception:  # noqa: BLE001 - only used for a log message
            log.exception("recording the connection in the spool")
