# The box's MQTT client (firmware/mqtt.py) on scripted streams, under MicroPython: two writers
# (the sender's PUBLISH and the reader's PUBACK) never wait in drain() at once, an oversized
# message is read past and acknowledged, a closed connection ends the reader without an exception.
import asyncio

import mptest
from envbox.firmware import mqtt as M


class SlowWriter:
    """A stream whose drain() takes a while; counts writers waiting in it at the same time."""

    def __init__(self):
        self.out = bytearray()
        self.active = 0
        self.max_active = 0
        self.drains = 0

    def write(self, b):
        self.out += bytes(b)

    async def drain(self):
        self.active += 1
        if self.active > self.max_active:
            self.max_active = self.active
        await asyncio.sleep_ms(3)
        self.active -= 1
        self.drains += 1

    def close(self):
        pass


class FeedReader:
    def __init__(self):
        self.buf = bytearray()
        self.more = asyncio.Event()
        self.eof = False

    def feed(self, b):
        self.buf += b
        self.more.set()

    async def _need(self, n):
        while len(self.buf) < n:
            if self.eof:
                raise EOFError
            self.more.clear()
            await self.more.wait()

    async def readexactly(self, n):
        await self._need(n)
        out = bytes(self.buf[:n])
        self.buf = self.buf[n:]
        return out

    async def readinto(self, mv):
        await self._need(1)
        n = min(len(mv), len(self.buf))
        mv[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def close_remote(self):
        self.eof = True
        self.more.set()


def _publish_packet(topic, payload, pid, retain=False):
    body = bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic + bytes((pid >> 8, pid & 0xFF)) \
        + payload
    n = len(body)
    hdr = bytearray((0x32 | (1 if retain else 0),))
    while True:
        b = n & 0x7F
        n >>= 7
        hdr.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(hdr) + body


def _packets(data):
    """Split a written byte stream into (type, body) packets; fails on garbage."""
    out = []
    p = 0
    while p < len(data):
        t = data[p]
        n = 0
        shift = 0
        p += 1
        while True:
            b = data[p]
            p += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        mptest.true(p + n <= len(data), "truncated packet in the stream")
        out.append((t, bytes(data[p:p + n])))
        p += n
    return out


def _client():
    c = M.MQTTClient(b"sj-001", "127.0.0.1", max_packet=4096)
    c._w = SlowWriter()
    c._r = FeedReader()
    return c


async def test_the_reader_and_the_sender_never_drain_at_once():
    c = _client()
    got = []
    c.on_message = lambda t, p, r: got.append(p)
    reader = asyncio.create_task(c.read_loop(lambda: 0))
    for i in range(30):
        c._r.feed(_publish_packet(b"envbox/v1/sj-001/config", b"{}", 100 + i))
    for i in range(30):
        await c.publish(b"envbox/v1/sj-001/data", b"\x01" * 50, i + 1)
    for _ in range(100):
        if len(got) == 30:
            break
        await asyncio.sleep_ms(5)
    mptest.eq(len(got), 30)
    mptest.eq(c._w.max_active, 1, "one writer at a time in drain()")
    pk = _packets(c._w.out)
    pubacks = [b for t, b in pk if t == M.PUBACK]
    pubs = [b for t, b in pk if t & 0xF0 == M.PUBLISH]
    mptest.eq(len(pubacks), 30)
    mptest.eq(len(pubs), 30)
    mptest.eq(sorted((b[0] << 8) | b[1] for b in pubacks), list(range(100, 130)))
    reader.cancel()


async def test_an_oversized_message_is_read_past_acknowledged_and_reported():
    c = _client()
    got = []
    c.on_message = lambda t, p, r: got.append((bytes(t), p, r))
    reader = asyncio.create_task(c.read_loop(lambda: 0))
    big = b"{" + b" " * 8070 + b"}"        # a 70-byte document, pretty-printed to 8 KB
    c._r.feed(_publish_packet(b"envbox/v1/sj-001/config", big, 7, retain=True))
    c._r.feed(_publish_packet(b"envbox/v1/sj-001/config", b'{"version": 2}', 8))
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep_ms(5)
    mptest.eq(got[0], (b"envbox/v1/sj-001/config", None, True))
    mptest.eq(got[1][1], b'{"version": 2}', "the session goes on after it")
    mptest.eq(c.oversize, 1)
    pids = [(b[0] << 8) | b[1] for t, b in _packets(c._w.out) if t == M.PUBACK]
    mptest.eq(pids, [7, 8], "the oversized one is acknowledged too (no redelivery loop)")
    reader.cancel()


async def test_a_closed_connection_ends_the_reader_quietly():
    c = _client()
    reader = asyncio.create_task(c.read_loop(lambda: 0))
    await asyncio.sleep_ms(5)
    c._r.close_remote()
    for _ in range(100):
        if reader.done():
            break
        await asyncio.sleep_ms(5)
    mptest.true(reader.done(), "the reader task ended")
    mptest.eq(c.error, "connection closed by the broker")
    await reader          # returns, does not raise


mptest.main(globals())
