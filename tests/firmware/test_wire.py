# Wire format under MicroPython: the same golden vectors the CPython tests read.
import micropython
import mptest
from envbox.firmware import wire

ALL = mptest.vectors("wire")["vectors"]
V = [v for v in ALL if v.get("kind") is None]
B = [v for v in ALL if v.get("kind") == "batch"]
A = [v for v in ALL if v.get("kind") == "ack"]


def _sample(d):
    s = wire.Sample(d["device"].encode())
    s.seq = d["seq"]
    s.t_s2020 = d["t_utc_s"] - wire.EPOCH_2020_UNIX_S
    s.flags = d["flags"]
    g = d["gps"]
    if g:
        s.fix_quality = g["fix_quality"]
        s.sats = g["sats"]
        s.hdop_x10 = int(g["hdop"] * 10 + 0.5)
        s.lat_e7 = g["lat_e7"]
        s.lon_e7 = g["lon_e7"]
        a = g["alt_m"] * 10
        s.alt_dm = int(a + 0.5) if a >= 0 else -int(-a + 0.5)
        s.speed_kmh_x10 = int(g["speed_kmh"] * 10 + 0.5)
        c = g["course_deg"]
        s.course_x10 = wire.COURSE_UNKNOWN if c is None else int(c * 10 + 0.5)
    names = [c[0] for c in wire.CHANNELS]
    for name in d["channels"]:
        c = d["channels"][name]
        s.set(names.index(name), wire.STATUS_NAMES.index(c["status"]), c["raw"] or 0)
    return s


def test_good_vectors_encode_to_the_golden_bytes():
    n = 0
    for v in V:
        if v["ok"]:
            mptest.eq(wire.encode(_sample(v["decoded"])), mptest.unhex(v["hex"]), v["name"])
            n += 1
    mptest.true(n >= 2)


def test_good_vectors_decode():
    for v in V:
        if v["ok"]:
            d = wire.decode(mptest.unhex(v["hex"]))
            e = v["decoded"]
            mptest.eq(d["device"], e["device"])
            mptest.eq(d["seq"], e["seq"])
            mptest.eq(d["t_utc_s"], e["t_utc_s"])
            for name in e["channels"]:
                mptest.eq(d["channels"][name]["raw"], e["channels"][name]["raw"], name)
                mptest.eq(d["channels"][name]["status"], e["channels"][name]["status"], name)


def test_bad_vectors_raise_wire_error():
    for v in V:
        if not v["ok"]:
            mptest.raises(wire.WireError, wire.decode, mptest.unhex(v["hex"]))


def test_encode_into_does_not_allocate():
    s = _sample(V[1]["decoded"])
    buf = bytearray(wire.MAX_SAMPLE_BYTES)
    n0 = wire.encode_into(buf, s)
    micropython.heap_lock()
    try:
        for i in range(200):
            s.seq = i
            s.set(wire.CH_PM25, wire.STATUS_OK, i)
            n = wire.encode_into(buf, s)
    finally:
        micropython.heap_unlock()
    mptest.true(n >= n0 - 2)


def test_decode_into_round_trips_every_good_single_vector():
    # negative coordinates and altitude, large values, no fix, no channels
    n = 0
    for v in V:
        if v["ok"]:
            x = mptest.unhex(v["hex"])
            s = wire.Sample(v["decoded"]["device"].encode())
            mptest.eq(wire.decode_into(s, x, len(x)), len(x), v["name"])
            mptest.eq(wire.encode(s), x, v["name"])
            n += 1
    mptest.true(n >= 3)


def test_batch_encoder_reproduces_the_golden_batches():
    n = 0
    for v in B:
        if not v["ok"]:
            continue
        buf = bytearray(2048)
        e = wire.BatchEncoder(buf, v["period_s"])
        s = wire.Sample(b"sj-001")
        for i, h in enumerate(v["singles"]):
            x = mptest.unhex(h)
            wire.decode_into(s, x, len(x))
            mptest.eq(wire.encode(s), x, "decode_into round trip")
            if i == 0:
                e.begin(s)
            mptest.true(e.add(s))
        mptest.eq(bytes(buf[:e.finish()]), mptest.unhex(v["hex"]), v["name"])
        n += 1
    mptest.true(n >= 1)


def test_batch_building_does_not_allocate():
    v = [v for v in B if v["ok"]][0]
    singles = [mptest.unhex(h) for h in v["singles"]]
    buf = bytearray(2048)
    e = wire.BatchEncoder(buf, 10)
    s = wire.Sample(b"sj-001")
    wire.decode_into(s, singles[0], len(singles[0]))
    e.begin(s)
    micropython.heap_lock()
    try:
        for k in range(10):
            for x in singles:
                wire.decode_into(s, x, len(x))
                e.add(s)
    finally:
        micropython.heap_unlock()
    mptest.true(e.count == 10 * len(singles))


def test_ack_vectors_decode_without_allocating():
    lo = [0] * wire.MAX_ACK_RANGES
    hi = [0] * wire.MAX_ACK_RANGES
    data = [mptest.unhex(v["hex"]) for v in A]
    got = [0] * len(A)
    micropython.heap_lock()
    try:
        for i in range(len(A)):
            got[i] = wire.decode_ack_into(data[i], len(data[i]), lo, hi)
    finally:
        micropython.heap_unlock()
    n = 0
    for i in range(len(A)):
        v = A[i]
        if v["ok"]:
            mptest.eq(got[i], len(v["ranges"]), v["name"])
            wire.decode_ack_into(data[i], len(data[i]), lo, hi)
            for k in range(got[i]):
                mptest.eq([lo[k], hi[k]], v["ranges"][k], v["name"])
            n += 1
        else:
            mptest.eq(got[i], -1, v["name"])
    mptest.true(n >= 3)


mptest.main(globals())
