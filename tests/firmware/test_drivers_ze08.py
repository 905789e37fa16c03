# firmware/drivers/ze08.py under MicroPython: golden vectors, resync, fuzz, no allocation.
import micropython
import mptest
from mptest import eq, true
from drivers_fakes import FakeUART, LCG, feed, vectors, unhex
from envbox.firmware import wire
from envbox.firmware.drivers.ze08 import ZE08

V = vectors("ze08")


def make(**cfg):
    u = FakeUART()
    c = {"warmup_ms": 0}
    c.update(cfg)
    d = ZE08(u, c)
    d.start(0)
    return d, u


def test_commands_match_vectors():
    d, u = make()
    eq(u.last_written(9), unhex(V["commands"]["qa_mode"]))
    d.request(10)
    eq(u.last_written(9), unhex(V["commands"]["read"]))
    d2, u2 = make(mode="active")
    eq(u2.last_written(9), unhex(V["commands"]["active_mode"]))


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
            eq(s.status[wire.CH_HCHO], wire.STATUS_CHECKSUM_ERROR, v["name"])
            continue
        dec = v["decoded"]
        eq(got, 1, v["name"])
        eq(s.status[wire.CH_HCHO], wire.STATUS_OK, v["name"])
        eq(s.value[wire.CH_HCHO], dec["hcho_ppb"], v["name"])
        if "hcho_ugm3" in dec:
            eq(d.hcho_ugm3, dec["hcho_ugm3"], v["name"])
        if "full_range_ppb" in dec:
            eq(d.full_range_ppb, dec["full_range_ppb"], v["name"])


def test_garbage_split_glued_resync():
    act = unhex(V["vectors"][0]["hex"])
    qa = unhex(V["vectors"][1]["hex"])
    bad = unhex(V["vectors"][2]["hex"])
    stream = b"\x17\xff\x00\xff\xff" + act + qa + bad + b"\xff\x86\x00" + act + b"\xff" * 4 + qa
    for chunk in (1, 2, 4, 8, 9, 10, 100):
        d, u = make()
        d.request(0)
        eq(feed(d, u, stream, 1, chunk), 4, "chunk %d" % chunk)
        true(d.checksum_errors >= 1)
        eq(d.hcho_ppb, 32)


def test_random_bytes_never_raise():
    r = LCG(11)
    for n in range(20):
        d, u = make()
        d.request(0)
        data = bytes((0xFF if r.below(4) == 0 else r.byte()) for _ in range(600))
        feed(d, u, data, 1, 1 + r.below(30))
        s = wire.Sample(b"t")
        d.fill(s, 5000)
        true(s.status[wire.CH_HCHO] != wire.STATUS_NOT_FITTED)


def test_out_of_range_keeps_value_and_warmup():
    d, u = make(range_ppb=30)
    d.request(0)
    feed(d, u, unhex(V["vectors"][0]["hex"]), 1)
    s = wire.Sample(b"t")
    d.fill(s, 2)
    eq(s.status[wire.CH_HCHO], wire.STATUS_OUT_OF_RANGE)
    eq(s.value[wire.CH_HCHO], 37)
    d = ZE08(FakeUART(), {})
    d.start(0)
    d.request(1000)
    d.fill(s, 1500)
    eq(s.status[wire.CH_HCHO], wire.STATUS_WARMING_UP)
    d.request(ZE08.WARMUP_MS + 10)
    d.fill(s, ZE08.WARMUP_MS + 2000)
    eq(s.status[wire.CH_HCHO], wire.STATUS_NO_DATA)
    eq(d.timeouts, 2)


def test_steady_state_allocates_nothing():
    d, u = make()
    reply = unhex(V["vectors"][1]["hex"])
    read = unhex(V["commands"]["read"])

    def answer(b):
        if b == read:
            u.inject(reply)
    u.on_write = answer
    u.chunk = 5
    s = wire.Sample(b"t")
    ok = [0]
    now = 1000
    micropython.heap_lock()
    try:
        for i in range(300):
            d.request(now)
            d.poll(now + 20)
            d.fill(s, now + 30)
            if d.ready() and s.status[wire.CH_HCHO] == wire.STATUS_OK and s.value[wire.CH_HCHO] == 32:
                ok[0] += 1
            now += 10000
    finally:
        micropython.heap_unlock()
    eq(ok[0], 300)


mptest.main(globals())
