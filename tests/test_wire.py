"""Wire format v1 under CPython: golden vectors, round trips and hostile bytes."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from envbox.firmware import wire

ALL = json.loads((Path(__file__).parent / "vectors" / "wire.json").read_text())["vectors"]
VECTORS = [v for v in ALL if v.get("kind") is None]
BATCHES = [v for v in ALL if v.get("kind") == "batch"]
ACKS = [v for v in ALL if v.get("kind") == "ack"]


def _sample_from_decoded(d):
    s = wire.Sample(d["device"].encode())
    s.seq = d["seq"]
    s.t_s2020 = d["t_utc_s"] - wire.EPOCH_2020_UNIX_S
    s.flags = d["flags"]
    g = d["gps"]
    if g:
        s.fix_quality = g["fix_quality"]
        s.sats = g["sats"]
        s.hdop_x10 = round(g["hdop"] * 10)
        s.lat_e7, s.lon_e7 = g["lat_e7"], g["lon_e7"]
        s.alt_dm = round(g["alt_m"] * 10)
        s.speed_kmh_x10 = round(g["speed_kmh"] * 10)
        s.course_x10 = (wire.COURSE_UNKNOWN if g["course_deg"] is None
                        else round(g["course_deg"] * 10))
    names = [c[0] for c in wire.CHANNELS]
    for name, c in d["channels"].items():
        s.set(names.index(name), wire.STATUS_NAMES.index(c["status"]), c["raw"] or 0)
    return s


@pytest.mark.parametrize("v", [v for v in VECTORS if v["ok"]], ids=lambda v: v["name"])
def test_good_vectors_decode_and_reencode(v):
    data = bytes.fromhex(v["hex"])
    d = wire.decode(data)
    assert json.loads(json.dumps(d)) == v["decoded"]
    assert wire.encode(_sample_from_decoded(d)) == data


@pytest.mark.parametrize("v", [v for v in VECTORS if not v["ok"]], ids=lambda v: v["name"])
def test_bad_vectors_raise_wire_error_with_reason(v):
    with pytest.raises(wire.WireError, match=v["error"]):
        wire.decode(bytes.fromhex(v["hex"]))


def test_known_layout_of_a_vector():
    # independent of the encoder: the header fields sit where the layout comment says
    data = bytes.fromhex(VECTORS[1]["hex"])
    assert data[0] == wire.KIND_SAMPLE and data[1] == 6 and data[2:8] == b"sj-001"
    assert int.from_bytes(data[8:12], "big") == 12345
    assert int.from_bytes(data[12:16], "big") + wire.EPOCH_2020_UNIX_S == 1764316800


status_codes = st.sampled_from([i for i in range(len(wire.STATUS_NAMES)) if i != wire.STATUS_NOT_FITTED])


@st.composite
def samples(draw):
    dev = draw(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                              exclude_characters="/+#"), min_size=1, max_size=32))
    s = wire.Sample(dev.encode())
    s.seq = draw(st.integers(0, 2**32 - 1))
    s.t_s2020 = draw(st.integers(0, 2**32 - 1))
    s.flags = draw(st.integers(0, 255))
    if draw(st.booleans()):
        s.fix_quality = draw(st.integers(1, 8))
        s.sats = draw(st.integers(0, 255))
        s.hdop_x10 = draw(st.integers(0, 255))
        s.lat_e7 = draw(st.integers(-900000000, 900000000))
        s.lon_e7 = draw(st.integers(-1800000000, 1800000000))
        s.alt_dm = draw(st.integers(-32768, 32767))
        s.speed_kmh_x10 = draw(st.integers(0, 65535))
        s.course_x10 = draw(st.one_of(st.integers(0, 3600), st.just(wire.COURSE_UNKNOWN)))
    for ch in range(wire.N_CHANNELS):
        if draw(st.booleans()):
            s.set(ch, draw(status_codes), draw(st.integers(-2**31, 2**31 - 1)))
    return s


@settings(max_examples=300)
@given(samples())
def test_round_trip(s):
    data = wire.encode(s)
    assert len(data) <= wire.MAX_SAMPLE_BYTES
    d = wire.decode(data)
    assert d["device"].encode() == s.device and d["seq"] == s.seq
    assert d["t_utc_s"] == s.t_s2020 + wire.EPOCH_2020_UNIX_S
    assert (d["gps"] is None) == (s.fix_quality == 0)
    if d["gps"]:
        assert (d["gps"]["lat_e7"], d["gps"]["lon_e7"]) == (s.lat_e7, s.lon_e7)
    for i, (name, scale) in enumerate(wire.CHANNELS):
        if s.status[i] == wire.STATUS_NOT_FITTED:
            assert name not in d["channels"]
            continue
        c = d["channels"][name]
        assert c["status"] == wire.STATUS_NAMES[s.status[i]]
        if wire.status_has_value(s.status[i]):
            assert c["raw"] == s.value[i] and c["value"] == s.value[i] / scale
        else:
            assert c["raw"] is None and c["value"] is None  # a failure never reads as a number
    assert wire.encode(_sample_from_decoded(json.loads(json.dumps(d)))) == data


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data):
    try:
        wire.decode(data)
    except wire.WireError:
        pass


@settings(max_examples=500)
@given(samples(), st.data())
def test_corrupted_payloads_raise_only_wire_error(s, data):
    b = bytearray(wire.encode(s))
    i = data.draw(st.integers(0, len(b) - 1))
    b[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(b)))
    try:
        wire.decode(bytes(b[:cut]))
    except wire.WireError:
        pass


def test_encoding_is_much_smaller_than_naive_json():
    d = VECTORS[1]["decoded"]
    assert len(bytes.fromhex(VECTORS[1]["hex"])) * 3 < len(wire.naive_json(d))


# ---------------------------------------------------------------- batches (KIND_BATCH)

@pytest.mark.parametrize("v", [v for v in BATCHES if v["ok"]], ids=lambda v: v["name"])
def test_batch_vectors_decode_to_their_singles_and_reencode(v):
    singles = [bytes.fromhex(h) for h in v["singles"]]
    assert wire.decode_many(bytes.fromhex(v["hex"])) == [wire.decode(x) for x in singles]
    buf = bytearray(4096)
    e = wire.BatchEncoder(buf, v["period_s"])
    s = wire.Sample(b"")
    for i, x in enumerate(singles):
        s = _sample_from_decoded(wire.decode(x))
        if i == 0:
            e.begin(s)
        assert e.add(s)
    assert bytes(buf[:e.finish()]) == bytes.fromhex(v["hex"])


@pytest.mark.parametrize("v", [v for v in BATCHES if not v["ok"]], ids=lambda v: v["name"])
def test_bad_batch_vectors_raise_wire_error_with_reason(v):
    with pytest.raises(wire.WireError, match=v["error"]):
        wire.decode_many(bytes.fromhex(v["hex"]))


def test_batch_header_layout():
    # independent of the encoder: kind, device, seq0, t0, period and count where the layout says
    v = next(v for v in BATCHES if v["ok"] and len(v["singles"]) > 1)
    data = bytes.fromhex(v["hex"])
    first = wire.decode(bytes.fromhex(v["singles"][0]))
    assert data[0] == wire.KIND_BATCH and data[1] == 6 and data[2:8] == b"sj-001"
    assert int.from_bytes(data[8:12], "big") == first["seq"]
    assert int.from_bytes(data[12:16], "big") + wire.EPOCH_2020_UNIX_S == first["t_utc_s"]
    assert data[16] == v["period_s"] and data[17] == len(v["singles"])


def test_decode_many_of_a_single_is_a_list_of_one():
    data = bytes.fromhex(VECTORS[1]["hex"])
    assert wire.decode_many(data) == [wire.decode(data)]


@settings(max_examples=200)
@given(st.lists(samples(), min_size=1, max_size=20), st.integers(1, 255))
def test_batch_round_trip(ss, period):
    # one device per batch; keep each sample's fields, force strictly growing seq and time
    dev = ss[0].device
    seq = ss[0].seq % (2**32 - 1000)
    t = 1000 + ss[0].t_s2020 % (2**32 - 100000)
    singles = []
    buf = bytearray(len(ss) * (wire.MAX_SAMPLE_BYTES + 16) + 64)
    e = wire.BatchEncoder(buf, period)
    for i, s in enumerate(ss):
        s.device = dev
        s.seq, s.t_s2020 = seq, t
        seq += 1 + (s.flags % 3)
        t += period + (s.flags % 5) - 2 if i else period
        if i == 0:
            e.begin(s)
        assert e.add(s)
        singles.append(wire.encode(s))
    batch = bytes(buf[:e.finish()])
    assert wire.decode_many(batch) == [wire.decode(x) for x in singles]
    # the gateway spools these: byte for byte what the box's encoder makes of each sample
    assert wire.singles(batch) == singles


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_decode_many(data):
    try:
        wire.decode_many(bytes([wire.KIND_BATCH]) + data)
    except wire.WireError:
        pass


@pytest.mark.parametrize("v", BATCHES, ids=lambda v: v["name"])
def test_singles_splits_a_batch_into_the_single_payloads(v):
    data = bytes.fromhex(v["hex"])
    if v["ok"]:
        assert wire.singles(data) == [bytes.fromhex(h) for h in v["singles"]]
    else:
        assert wire.singles(data) == [data]   # decode() then rejects it with its reason


def test_singles_of_a_single_is_itself():
    data = bytes.fromhex(VECTORS[1]["hex"])
    assert wire.singles(data) == [data]


# ---------------------------------------------------------------- acknowledgements (KIND_ACK)

@pytest.mark.parametrize("v", ACKS, ids=lambda v: v["name"])
def test_ack_vectors(v):
    data = bytes.fromhex(v["hex"])
    if v["ok"]:
        want = [tuple(r) for r in v["ranges"]]
        assert wire.decode_ack(data) == want
        assert wire.encode_ack(want) == data
    else:
        with pytest.raises(wire.WireError, match=v["error"]):
            wire.decode_ack(data)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 2**30 - 2), st.integers(1, 5000)), max_size=40))
def test_ack_round_trip_keeps_the_newest_merged_ranges(pairs):
    ranges = [(a, min(a + n, 2**30 - 1)) for a, n in pairs]
    got = wire.decode_ack(wire.encode_ack(ranges))
    held = set()
    for a, b in got:
        held.update(range(a, b)) if b - a < 20000 else None
    # every acknowledged seq was in the input (nothing is acknowledged that was not held) ...
    for a, b in got:
        assert any(x <= a and b <= y for x, y in _merge(ranges)), (a, b)
    # ... and the newest input ranges are all there
    assert got == _merge(ranges)[-wire.MAX_ACK_RANGES:]


def _merge(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_random_bytes_never_crash_the_ack_decoder(data):
    try:
        for a, b in wire.decode_ack(bytes([wire.KIND_ACK]) + data):
            assert 0 <= a < b <= 2**30
    except wire.WireError:
        pass


# ---------------------------------------------------------------- 32-bit small integers

def _plain_varint(v):
    u = (v << 1) if v >= 0 else ((-v << 1) - 1)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


@settings(max_examples=2000)
@given(st.integers(-(2**33), 2**33))
def test_varint_in_halves_gives_the_plain_varint_bytes(v):
    # the box writes large values (positions, their first differences) from 16-bit halves so no
    # integer passes 2^30 on a 32-bit port; the bytes must be those of the plain encoding
    buf = bytearray(16)
    n = wire._put_varint2(buf, 0, v >> 16, v & 0xFFFF)
    assert bytes(buf[:n]) == _plain_varint(v)
    n = wire._put_varint(buf, 0, v)
    assert bytes(buf[:n]) == _plain_varint(v)


@given(st.integers(-1_800_000_000, 1_800_000_000))
def test_longitude_halves(v):
    s = wire.Sample(b"x")
    s.lon_e7 = v
    assert -32768 <= s.lon_e7_hi < 32768 and 0 <= s.lon_e7_lo < 65536
    assert s.lon_e7 == v
