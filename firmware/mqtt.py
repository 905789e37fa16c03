# A small asyncio MQTT 3.1.1 client for the box (OASIS MQTT 3.1.1).
#
# Why our own and not micropython-lib's umqtt: umqtt blocks the caller on the socket, does not
# resend unacknowledged QoS 1 messages and does not ping by itself, so a stalled link stalls the
# sampler. mqtt_as (Peter Hinch) does all of that well but owns the Wi-Fi/LTE link and its own
# reconnect policy and queueing; the box keeps its own journal and needs exactly: QoS 1 with
# packet ids it chooses (so a resend after reconnect reuses them), persistent session, last will,
# keepalive, and every wait bounded by a timeout. That is ~200 lines.
#
# Every coroutine here may raise OSError on a broken link; the caller (uplink) catches, closes and
# reconnects. Nothing here touches the sampler. read_loop never raises: when the link breaks it
# records why (`error`) and returns, so its task ends cleanly (no "Task exception wasn't
# retrieved" when a broker dies) and the sender sees the task done.
#
# Two tasks write to the socket: the sender (PUBLISH, PINGREQ) and the reader (PUBACK for the
# QoS 1 messages it receives). MicroPython's asyncio lets one writer at a time wait in drain(),
# so every write goes through one lock.
#
# A packet larger than max_packet (a config document far past its limit, a hostile publisher) is
# read past in small pieces without keeping it, acknowledged if it was a QoS 1 PUBLISH, and
# handed to on_message with payload None: the box reports it and the session goes on (a retained
# oversize message would otherwise come back on every reconnect and lock the uplink).

import asyncio
import struct

from .compat import const

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)
SUBACK = const(0x90)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)


class MQTTError(OSError):
    pass


def _varlen(buf, pos, n):
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            b |= 0x80
        buf[pos] = b
        pos += 1
        if not n:
            return pos


def _str(buf, pos, s):
    n = len(s)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = s
    return pos + 2 + n


class MQTTClient:
    def __init__(self, client_id, host, port=1883, keepalive_s=60, clean_session=False,
                 user=None, password=None, will_topic=None, will_msg=None, will_retain=True,
                 ssl=None, max_packet=4096, server_hostname=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.clean_session = clean_session
        self.user = user
        self.password = password
        self.will_topic = will_topic
        self.will_msg = will_msg
        self.will_retain = will_retain
        self.ssl = ssl
        self.server_hostname = server_hostname
        self._r = None
        self._w = None
        self._hdr = bytearray(8 + 2 + 128)   # fixed header + topic + packet id
        self._max_packet = max_packet
        self.session_present = False
        self.on_puback = None      # callback(pid)
        self.on_message = None     # callback(topic: bytes, payload: bytes, retained: bool)
        self.last_rx_ms = 0
        self.pings_outstanding = 0
        self.error = None          # why read_loop ended
        self.oversize = 0          # packets read past for being larger than max_packet
        self._lock = asyncio.Lock()
        self._skip = bytearray(64)

    async def _send(self, *bufs):
        # one writer at a time: the reader's PUBACKs and the sender's PUBLISHes share the stream
        async with self._lock:
            w = self._w
            if w is None:
                raise MQTTError("not connected")
            for b in bufs:
                w.write(b)
            await w.drain()

    async def connect(self, timeout_ms=10000):
        if self.ssl:
            # the certificate is checked against server_hostname (or host), and the clock must
            # be valid first (certificates carry dates): the uplink waits for it
            op = asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                         server_hostname=self.server_hostname or self.host)
        else:
            op = asyncio.open_connection(self.host, self.port)
        self._r, self._w = await asyncio.wait_for_ms(op, timeout_ms)
        flags = 0x02 if self.clean_session else 0
        size = 10 + 2 + len(self.client_id)
        if self.will_topic:
            # will flag, will QoS 1, will retain
            flags |= 0x04 | 0x08 | (0x20 if self.will_retain else 0)
            size += 2 + len(self.will_topic) + 2 + len(self.will_msg or b"")
        if self.user is not None:
            flags |= 0x80
            size += 2 + len(self.user)
            if self.password is not None:
                flags |= 0x40
                size += 2 + len(self.password)
        pkt = bytearray(size + 5)
        pkt[0] = CONNECT
        p = _varlen(pkt, 1, size)
        p = _str(pkt, p, b"MQTT")
        pkt[p] = 4          # protocol level 3.1.1
        pkt[p + 1] = flags
        struct.pack_into(">H", pkt, p + 2, self.keepalive_s)
        p += 4
        p = _str(pkt, p, self.client_id)
        if self.will_topic:
            p = _str(pkt, p, self.will_topic)
            p = _str(pkt, p, self.will_msg or b"")
        if self.user is not None:
            p = _str(pkt, p, self.user)
            if self.password is not None:
                p = _str(pkt, p, self.password)
        await self._send(memoryview(pkt)[:p])
        typ, body = await asyncio.wait_for_ms(self._read_packet(), timeout_ms)
        if typ != CONNACK or len(body) != 2:
            raise MQTTError("expected CONNACK")
        if body[1] != 0:
            raise MQTTError("CONNACK refused, code %d" % body[1])
        self.session_present = bool(body[0] & 1)

    async def _read_packet(self):
        """(type byte, body). A body longer than max_packet is not kept: the first bytes (enough
        for a PUBLISH's topic and packet id) come back with `oversize` counting it."""
        r = self._r
        h = await r.readexactly(1)
        n = 0
        shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")
        if n > self._max_packet:
            keep = 2 + 255 + 2
            head = await r.readexactly(keep)
            left = n - keep
            s = self._skip
            while left:
                k = left if left < len(s) else len(s)
                got = await r.readinto(memoryview(s)[:k])
                if not got:
                    raise EOFError
                left -= got
            self.oversize += 1
            return h[0] | 0x100, head
        body = await r.readexactly(n) if n else b""
        return h[0], body

    async def publish(self, topic, payload, pid, qos=1, retain=False, dup=False):
        """Send one PUBLISH. `payload` may be a memoryview. Returns when written to the socket."""
        h = self._hdr
        n = len(topic)
        size = 2 + n + (2 if qos else 0) + len(payload)
        h[0] = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
        p = _varlen(h, 1, size)
        p = _str(h, p, topic)
        if qos:
            h[p] = pid >> 8
            h[p + 1] = pid & 0xFF
            p += 2
        await self._send(memoryview(h)[:p], payload)

    async def subscribe(self, topic, pid, qos=1):
        n = len(topic)
        pkt = bytearray(5 + 2 + n + 1 + 2)
        pkt[0] = SUBSCRIBE
        p = _varlen(pkt, 1, 2 + 2 + n + 1)
        pkt[p] = pid >> 8
        pkt[p + 1] = pid & 0xFF
        p = _str(pkt, p + 2, topic)
        pkt[p] = qos
        await self._send(memoryview(pkt)[:p + 1])

    async def ping(self):
        self.pings_outstanding += 1
        await self._send(b"\xc0\x00")

    async def read_loop(self, ticks_ms):
        """Read packets until the link breaks; dispatch PUBACK and PUBLISH. Returns (never
        raises) with `error` saying why it ended."""
        try:
            while True:
                typ, body = await self._read_packet()
                self.last_rx_ms = ticks_ms()
                big = typ & 0x100
                t = typ & 0xF0
                if t == PUBACK:
                    if self.on_puback:
                        self.on_puback((body[0] << 8) | body[1])
                elif t == PINGRESP:
                    self.pings_outstanding = 0
                elif t == PUBLISH:
                    qos = (typ >> 1) & 3
                    tl = (body[0] << 8) | body[1]
                    topic = body[2:2 + tl]
                    p = 2 + tl
                    if qos:
                        pid = (body[p] << 8) | body[p + 1]
                        p += 2
                        await self._send(bytes((PUBACK, 2, pid >> 8, pid & 0xFF)))
                    if self.on_message:
                        self.on_message(topic, None if big else body[p:], bool(typ & 1))
                # SUBACK and others: nothing to do
        except asyncio.CancelledError:
            self.error = "closed"
            raise
        except EOFError:
            self.error = "connection closed by the broker"
        except Exception as e:  # noqa: BLE001 - the link is gone; say why
            self.error = repr(e)

    async def disconnect(self):
        try:
            await self._send(b"\xe0\x00")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.close()

    def close(self):
        try:
            if self._w:
                self._w.close()
        except Exception:  # noqa: BLE001
            pass
        self._r = None
        self._w = None
