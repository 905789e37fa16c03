# firmware/drivers/ze03.py under MicroPython: golden vectors, resync, fuzz, no allocation.
import micropython
import mptest
from mptest import eq, true
from drivers_fakes import FakeUART, LCG, feed, vectors, unhex
from envbox.firmware import wire
from envbox.firmware.drivers.ze03 import ZE03

V = vectors("ze03")
GAS_OF_CODE = {0x2A: "o3", 0x2C: "no2", 0x2B: "so2", 0x04: "co"}
# decoded key -> (channel, wire units per decoded unit)
KEYS = {"o3_ppb": (wire.CH_O3, 1), "no2_ppb": (wire.CH_NO2, 1), "so2_ppb": (wire.CH_SO2, 1),
        "co_ppm": (wire.CH_CO, 10)}


def make(gas="o3", **cfg):
    u = FakeUART()
    c = {"gas": gas, "warmup_ms": 0}
    c.update(cfg)
    d = ZE03(u, c)
    d.start(0)
    return d, u


def test_commands_match_vectors():
    d, u = make()
    eq(u.last_written(9), unhex(V["commands"]["qa_mode"]))
    d.request(10)
    eq(u.last_written(9), unhex(V["commands"]["read"]))
    d2 = ZE03(FakeUART(), {"gas": "co", "mode": "active"})
    d2.start(0)
    eq(d2._uart.last_written(9), unhex(V["commands"]["active_mode"]))


def test_vectors_decode():
    for v in V["vectors"]:
        b = unhex(v["hex"])
        gas = "o3"
        if v["ok"] and v["decoded"]:
            gas = GAS_OF_CODE[v["decoded"]["gas_code"]]
        d, u = make(gas)
        d.request(0)
        got = feed(d, u, b, 5)
        s = wire.Sample(b"t")
        d.fill(s, 10)
        if not v["ok"]:
            eq(got, 0, v["name"])
            eq(d.checksum_errors, 1, v["name"])
            eq(s.status[d.ch], wire.STATUS_CHECKSUM_ERROR, v["name"])
            continue
        eq(d.frames_ok, 1, v["name"])
        if v.get("kind") == "ack":
            eq(got, 0, v["name"])
            eq(s.status[d.ch], wire.STATUS_NO_DATA, v["name"])
            continue
        dec = v["decoded"]
        eq(d.conc_raw, dec["conc_raw"], v["name"])
        eq(d.decimals, dec["decimals"], v["name"])
        for k in KEYS:
            if k in dec:
                ch, mult = KEYS[k]
                eq(d.ch, ch, v["name"])
                eq(s.status[ch], wire.STATUS_OK, v["name"])
                eq(s.value[ch], dec[k] * mult, v["name"])


def _frames():
    return [unhex(v["hex"]) for v in V["vectors"] if v["ok"] and v.get("decoded", {}).get("gas_code") == 0x2A]


def test_garbage_split_glued_resync():
    good = _frames()
    bad = unhex([v for v in V["vectors"] if not v["ok"]][0]["hex"])
    stream = (b"\x00\xff\xff\x86\x12" + good[0] + good[1] + b"\xff\x86\x00" + bad + good[0]
              + b"\xff" * 7 + good[1] + bad[:5] + good[0])
    expect = 5
    for chunk in (1, 2, 3, 5, 7, 9, 64):
        d, u = make("o3")
        d.request(0)
        eq(feed(d, u, stream, 1, chunk), expect, "chunk %d" % chunk)
        eq(d.frames_ok, expect)
        true(d.checksum_errors >= 1)
        true(d.bytes_skipped >= 5 + 3 + 7)
        eq(d.value, 380)             # last frame = the O3 Q&A reply, 380 ppb


def test_random_bytes_never_raise():
    r = LCG(7)
    for n in range(20):
        d, u = make(("o3", "co", "no2", "so2")[n % 4])
        d.request(0)
        data = bytes((0xFF if r.below(3) == 0 else r.byte()) for _ in range(600))
        feed(d, u, data, 1, 1 + r.below(20))
        s = wire.Sample(b"t")
        d.fill(s, 5000)
        true(s.status[d.ch] in (wire.STATUS_OK, wire.STATUS_OUT_OF_RANGE, wire.STATUS_NO_DATA,
                                 wire.STATUS_CHECKSUM_ERROR, wire.STATUS_SENSOR_ERROR))


def test_gas_mismatch_is_sensor_error():
    d, u = make("no2")
    d.request(0)
    feed(d, u, unhex(V["vectors"][0]["hex"]), 1)    # an O3 reply on the NO2 socket
    s = wire.Sample(b"t")
    d.fill(s, 10)
    eq(s.status[wire.CH_NO2], wire.STATUS_SENSOR_ERROR)
    eq(d.gas_mismatches, 1)


def test_legacy_layout_uses_cfg_decimals():
    # FF 86 00 07 00 00 00 00 CS: no gas code, no decimals byte (older firmware)
    f = bytearray(b"\xff\x86\x00\x07\x00\x00\x00\x00\x00")
    f[8] = (0x100 - (0x86 + 0x07)) & 0xFF
    for legacy, want in ((1, 700), (2, 70)):
        d, u = make("o3", legacy_decimals=legacy)
        d.request(0)
        feed(d, u, f, 1)
        s = wire.Sample(b"t")
        d.fill(s, 2)
        eq(s.value[wire.CH_O3], want)


def test_forced_decimals_and_out_of_range():
    d, u = make("o3", decimals=1)
    d.request(0)
    feed(d, u, unhex(V["vectors"][0]["hex"]), 1)     # 38 raw, forced x0.1 ppm -> 3800 ppb
    s = wire.Sample(b"t")
    d.fill(s, 2)
    eq(s.value[wire.CH_O3], 3800)
    eq(s.status[wire.CH_O3], wire.STATUS_OK)
    d, u = make("o3", range_ppm=0)
    d.request(0)
    feed(d, u, unhex(V["vectors"][0]["hex"]), 1)
    d.fill(s, 2)
    eq(s.status[wire.CH_O3], wire.STATUS_OUT_OF_RANGE)
    eq(s.value[wire.CH_O3], 380)                     # value kept


def test_warmup_timeout_and_no_data():
    u = FakeUART()
    d = ZE03(u, {"gas": "co", "warmup_ms": 60000})
    d.start(0)
    d.request(1000)
    s = wire.Sample(b"t")
    d.fill(s, 2000)
    eq(s.status[wire.CH_CO], wire.STATUS_WARMING_UP)
    eq(d.timeouts, 1)                # unanswered, even while warming up
    d.request(70000)
    d.poll(70500)
    eq(d.timeouts, 1)
    d.poll(71500)
    eq(d.timeouts, 2)
    true(not d.ready())
    d.fill(s, 71600)
    eq(s.status[wire.CH_CO], wire.STATUS_NO_DATA)
    eq(d.timeouts, 2)                # counted once per request


def test_rebooted_module_gets_qa_mode_again():
    d, u = make("o3")
    d.request(0)
    feed(d, u, unhex(V["vectors"][3]["hex"]), 1)     # active-upload frame
    n = u.writes
    d.request(10000)
    eq(u.writes, n + 2)
    eq(d.mode_resends, 1)


def test_steady_state_allocates_nothing():
    d, u = make("co")
    reply = unhex(V["vectors"][2]["hex"])
    read = unhex(V["commands"]["read"])

    def answer(b):
        if b == read:
            u.inject(reply)
    u.on_write = answer
    u.chunk = 4
    s = wire.Sample(b"t")
    ok = [0, 0]
    now = 1000
    d.request(now)
    micropython.heap_lock()
    try:
        for i in range(300):
            d.request(now)
            d.poll(now + 20)
            if d.ready():
                ok[0] += 1
            d.fill(s, now + 30)
            if s.status[wire.CH_CO] == wire.STATUS_OK and s.value[wire.CH_CO] == 30:
                ok[1] += 1
            now += 10000
    finally:
        micropython.heap_unlock()
    eq(ok, [300, 300])


mptest.main(globals())
