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
# reconnects. Nothing here touches the sampler.

import asyncio
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

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
                 ssl=None, max_packet=4096):
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
        self._r = None
        self._w = None
        self._hdr = bytearray(8 + 2 + 128)   # fixed header + topic + packet id
        self._max_packet = max_packet
        self.session_present = False
        self.on_puback = None      # callback(pid)
        self.on_message = None     # callback(topic: bytes, payload: bytes, retained: bool)
        self.last_rx_ms = 0
        self.pings_outstanding = 0

    async def connect(self, timeout_ms=10000):
        self._r, self._w = await asyncio.wait_for_ms(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl)
            if self.ssl else asyncio.open_connection(self.host, self.port), timeout_ms)
        flags = 0x02 if self.clean_session else 0
        size = 10 + 2 + len(self.client_id)
        if self.will_topic:
            # will flag, will QoS 1, will retain
            flags |= 0x04 | 0x08 | (0x20 if self.will_retain else 0)
            size += 2 + len(self.will_topic) + 2 + len(self.will_msg)
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
            p = _str(pkt, p, self.will_msg)
        if self.user is not None:
            p = _str(pkt, p, self.user)
            if self.password is not None:
                p = _str(pkt, p, self.password)
        self._w.write(memoryview(pkt)[:p])
        await self._w.drain()
        typ, body = await asyncio.wait_for_ms(self._read_packet(), timeout_ms)
        if typ != CONNACK or len(body) != 2:
            raise MQTTError("expected CONNACK")
        if body[1] != 0:
            raise MQTTError("CONNACK refused, code %d" % body[1])
        self.session_present = bool(body[0] & 1)

    async def _read_packet(self):
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
            raise MQTTError("packet too large")
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
        w = self._w
        w.write(memoryview(h)[:p])
        w.write(payload)
        await w.drain()

    async def subscribe(self, topic, pid, qos=1):
        n = len(topic)
        pkt = bytearray(5 + 2 + n + 1 + 2)
        pkt[0] = SUBSCRIBE
        p = _varlen(pkt, 1, 2 + 2 + n + 1)
        pkt[p] = pid >> 8
        pkt[p + 1] = pid & 0xFF
        p = _str(pkt, p + 2, topic)
        pkt[p] = qos
        self._w.write(memoryview(pkt)[:p + 1])
        await self._w.drain()

    async def ping(self):
        self.pings_outstanding += 1
        self._w.write(b"\xc0\x00")
        await self._w.drain()

    async def read_loop(self, ticks_ms):
        """Read packets until the link breaks (raises). Dispatches PUBACK and PUBLISH."""
        while True:
            typ, body = await self._read_packet()
            self.last_rx_ms = ticks_ms()
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
                    self._w.write(bytes((PUBACK, 2, pid >> 8, pid & 0xFF)))
                    await self._w.drain()
                if self.on_message:
                    self.on_message(topic, body[p:], bool(typ & 1))
            # SUBACK and others: nothing to do

    async def disconnect(self):
        try:
            self._w.write(b"\xe0\x00")
            await self._w.drain()
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
