# firmware/drivers/mhz19b.py under MicroPython: golden vectors, resync, fuzz, no allocation.
import micropython
import mptest
from mptest import eq, true
from drivers_fakes import FakeUART, LCG, feed, vectors, unhex
from envbox.firmware import wire
from envbox.firmware.drivers.mhz19b import MHZ19B, range_command

V = vectors("mhz19b")
CH = wire.CH_CO2


def make(**cfg):
    u = FakeUART()
    c = {"warmup_ms": 0}
    c.update(cfg)
    d = MHZ19B(u, c)
    d.start(0)
    return d, u


def test_commands_match_vectors():
    d, u = make(abc=False, set_range=5000)
    eq(u.last_written(18), unhex(V["commands"]["abc_off"] + V["commands"]["range_5000"]))
    d.request(10)
    eq(u.last_written(9), unhex(V["commands"]["read"]))
    d, u = make(abc=True)
    eq(u.last_written(9), unhex(V["commands"]["abc_on"]))
    eq(range_command(5000), unhex(V["commands"]["range_5000"]))
    d, u = make()
    eq(u.writes, 0)                  # ABC and range left alone unless configured


def test_vectors_decode():
    for v in V["vectors"]:
        d, u = make()
        d.request(0)
        got = feed(d, u, unhex(v["hex"]), 5)
        s = wire.Sample(b"t")
        d.fill(s, 10)
        if not v["ok"]:
            eq(got, 0, v["name"])
            eq(d.checksum_errors, 1, v["name"])
            eq(s.status[CH], wire.STATUS_CHECKSUM_ERROR, v["name"])
            continue
        eq(s.status[CH], wire.STATUS_OK, v["name"])
        eq(s.value[CH], v["decoded"]["co2_ppm"], v["name"])
        if "temp_c" in v["decoded"]:
            eq(d.temp_c, v["decoded"]["temp_c"], v["name"])
        eq(s.status[wire.CH_TEMP], wire.STATUS_NOT_FITTED)


def test_garbage_split_glued_resync():
    a = unhex(V["vectors"][0]["hex"])
    b = unhex(V["vectors"][1]["hex"])
    bad = unhex(V["vectors"][2]["hex"])
    stream = b"\x86\xff\xff\xff\x01" + a + b + bad + b"\xff\x86\x02" + a + b"\x00\xff" + b
    for chunk in (1, 2, 3, 8, 9, 11, 100):
        d, u = make()
        d.request(0)
        eq(feed(d, u, stream, 1, chunk), 4, "chunk %d" % chunk)
        eq(d.co2_ppm, 636)
        true(d.checksum_errors >= 1 and d.bytes_skipped >= 8)


def test_random_bytes_never_raise():
    r = LCG(5)
    for n in range(20):
        d, u = make()
        d.request(0)
        data = bytes((0xFF if r.below(4) == 0 else (0x86 if r.below(5) == 0 else r.byte())) for _ in range(600))
        feed(d, u, data, 1, 1 + r.below(30))
        s = wire.Sample(b"t")
        d.fill(s, 5000)
        true(s.status[CH] != wire.STATUS_NOT_FITTED)


def test_warmup_range_and_timeout():
    d, u = make(warmup_ms=180000)
    d.request(1000)
    feed(d, u, unhex(V["vectors"][0]["hex"]), 1100)
    s = wire.Sample(b"t")
    d.fill(s, 1200)
    eq(s.status[CH], wire.STATUS_WARMING_UP)
    d, u = make(range_ppm=600)
    d.request(0)
    feed(d, u, unhex(V["vectors"][1]["hex"]), 1)
    d.fill(s, 2)
    eq((s.status[CH], s.value[CH]), (wire.STATUS_OUT_OF_RANGE, 636))
    d.request(10000)
    d.poll(10500)
    d.poll(11001)
    eq(d.timeouts, 1)
    d.fill(s, 11002)
    eq(s.status[CH], wire.STATUS_NO_DATA)
    eq(d.timeouts, 1)


def test_steady_state_allocates_nothing():
    d, u = make()
    reply = unhex(V["vectors"][1]["hex"])
    read = unhex(V["commands"]["read"])

    def answer(b):
        if b == read:
            u.inject(reply)
    u.on_write = answer
    u.chunk = 3
    s = wire.Sample(b"t")
    ok = [0]
    now = 1000
    micropython.heap_lock()
    try:
        for i in range(300):
            d.request(now)
            d.poll(now + 20)
            d.fill(s, now + 30)
            if d.ready() and s.status[CH] == wire.STATUS_OK and s.value[CH] == 636:
                ok[0] += 1
            now += 10000
    finally:
        micropython.heap_unlock()
    eq(ok[0], 300)


mptest.main(globals())
