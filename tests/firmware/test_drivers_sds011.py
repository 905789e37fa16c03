# firmware/drivers/sds011.py under MicroPython: golden vectors, resync, fuzz, no allocation.
import micropython
import mptest
from mptest import eq, true
from drivers_fakes import FakeUART, LCG, feed, vectors, unhex
from envbox.firmware import wire
from envbox.firmware.drivers.sds011 import SDS011

V = vectors("sds011")


def make(**cfg):
    u = FakeUART()
    c = {"warmup_ms": 0}
    c.update(cfg)
    d = SDS011(u, c)
    d.start(0)
    return d, u


def test_commands_match_vectors():
    d, u = make()
    eq(u.last_written(38), unhex(V["commands"]["work"] + V["commands"]["query_mode"]))
    d.request(10)
    eq(u.last_written(19), unhex(V["commands"]["query"]))


def test_vectors_decode():
    for v in V["vectors"]:
        d, u = make()
        d.request(0)
        got = feed(d, u, unhex(v["hex"]), 5)
        s = wire.Sample(b"t")
        d.fill(s, 10)
        if not v["ok"]:
            eq(got, 0, v["name"])
            if v["error"] == "checksum":
                eq(d.checksum_errors, 1, v["name"])
                eq(s.status[wire.CH_PM25], wire.STATUS_CHECKSUM_ERROR, v["name"])
            else:
                eq(d.framing_errors, 1, v["name"])
                eq(s.status[wire.CH_PM25], wire.STATUS_NO_DATA, v["name"])
            continue
        if v.get("kind") == "ack":
            eq((got, d.acks), (0, 1), v["name"])
            continue
        dec = v["decoded"]
        eq(got, 1, v["name"])
        eq(d.pm25_x10, int(dec["pm25_ugm3"] * 10 + 0.5), v["name"])
        eq(d.pm10_x10, int(dec["pm10_ugm3"] * 10 + 0.5), v["name"])
        eq(d.device_id, dec["device_id"], v["name"])
        eq(s.status[wire.CH_PM25], wire.STATUS_OK)
        eq(s.value[wire.CH_PM25], int(dec["pm25_ugm3"] + 0.5))


def test_garbage_split_glued_resync():
    a = unhex(V["vectors"][0]["hex"])
    b = unhex(V["vectors"][1]["hex"])
    ack = unhex(V["vectors"][2]["hex"])
    bad = unhex(V["vectors"][3]["hex"])
    stream = b"\xab\xaa\xaa\xc0\x01" + a + ack + b + bad + b"\xaa\xc0\x00" + a + b"\xab\xaa" + b
    for chunk in (1, 2, 3, 9, 10, 11, 100):
        d, u = make()
        d.request(0)
        eq(feed(d, u, stream, 1, chunk), 4, "chunk %d" % chunk)
        eq(d.pm25_x10, 9)
        true(d.checksum_errors >= 1)


def test_random_bytes_never_raise():
    r = LCG(3)
    for n in range(20):
        d, u = make()
        d.request(0)
        data = bytes((0xAA if r.below(5) == 0 else (0xC0 if r.below(5) == 0 else r.byte())) for _ in range(600))
        feed(d, u, data, 1, 1 + r.below(30))
        s = wire.Sample(b"t")
        d.fill(s, 5000)
        true(s.status[wire.CH_PM25] != wire.STATUS_NOT_FITTED)


def test_rounding_range_and_warmup():
    f = bytearray(b"\xaa\xc0\x0f\x27\x10\x27\x00\x00\x00\xab")   # 999.9 and 1000.0 ug/m3
    f[8] = (0x0f + 0x27 + 0x10 + 0x27) & 0xFF
    d, u = make()
    d.request(0)
    feed(d, u, f, 1)
    s = wire.Sample(b"t")
    d.fill(s, 2)
    eq((s.status[wire.CH_PM25], s.value[wire.CH_PM25]), (wire.STATUS_OK, 1000))
    eq((s.status[wire.CH_PM10], s.value[wire.CH_PM10]), (wire.STATUS_OUT_OF_RANGE, 1000))
    d = SDS011(FakeUART(), {})
    d.start(0)
    d.request(100)
    d.fill(s, 29999)
    eq(s.status[wire.CH_PM10], wire.STATUS_WARMING_UP)


def test_steady_state_allocates_nothing():
    d, u = make()
    reply = unhex(V["vectors"][1]["hex"])
    q = unhex(V["commands"]["query"])

    def answer(b):
        if b == q:
            u.inject(reply)
    u.on_write = answer
    u.chunk = 7
    s = wire.Sample(b"t")
    ok = [0]
    now = 1000
    micropython.heap_lock()
    try:
        for i in range(300):
            d.request(now)
            d.poll(now + 20)
            d.fill(s, now + 30)
            if d.ready() and s.status[wire.CH_PM25] == wire.STATUS_OK and s.value[wire.CH_PM25] == 1:
                ok[0] += 1
            now += 10000
    finally:
        micropython.heap_unlock()
    eq(ok[0], 300)


mptest.main(globals())
