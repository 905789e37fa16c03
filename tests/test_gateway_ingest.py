"""Gateway ingest validation (check_message): what is accepted, what is dead-lettered and why,
and that hostile payloads never raise."""

import threading
import time

from hypothesis import given, settings, strategies as st

from envbox.firmware import wire
from envbox.gateway.ingest import Inbox, check_message, check_payload
from envbox.gateway.spool import Accepted, Rejected

EPOCH_2020 = 1577836800    # 2020-01-01T00:00:00Z, written out here rather than read from wire.py
NOW = 1_764_300_000.0      # 2025-11-28T03:20:00Z
IDX = 2                    # envbox/v1/<device>/data


def payload(device=b"sj-001", seq=7, t_unix=int(NOW) - 60, **channels):
    s = wire.Sample(device)
    s.seq = seq
    s.t_s2020 = t_unix - EPOCH_2020
    for ch, raw in channels.items():
        s.set(getattr(wire, ch), wire.STATUS_OK, raw)
    return wire.encode(s)


def check(topic, data):
    return check_message(topic, data, IDX, NOW, 86400)


def test_valid_sample_is_accepted_with_the_box_time():
    v = check("envbox/v1/sj-001/data", payload(seq=42, t_unix=1_764_000_000, CH_PM25=17))
    assert isinstance(v, Accepted)
    assert (v.device, v.seq, v.t_utc_s) == ("sj-001", 42, 1_764_000_000)


def test_random_bytes_are_malformed():
    v = check("envbox/v1/sj-001/data", b"\x8f\x00garbage")
    assert isinstance(v, Rejected) and v.reason.startswith("malformed:")
    assert v.device == "sj-001" and v.seq is None


def test_truncated_payload_is_malformed():
    p = payload(CH_PM25=17, CH_TEMP=2150)
    for n in (0, 1, 5, len(p) - 1):
        v = check("envbox/v1/sj-001/data", p[:n])
        assert isinstance(v, Rejected) and v.reason.startswith("malformed:"), n


def test_wrong_device_is_rejected_and_not_counted_for_either_device():
    v = check("envbox/v1/sj-002/data", payload(device=b"sj-001"))
    assert isinstance(v, Rejected)
    assert "device mismatch" in v.reason and "sj-002" in v.reason and "sj-001" in v.reason
    assert v.count_seq is False


def test_future_timestamp_is_rejected():
    ok = check("envbox/v1/sj-001/data", payload(t_unix=int(NOW) + 86000))
    bad = check("envbox/v1/sj-001/data", payload(t_unix=int(NOW) + 86400 + 100))
    assert isinstance(ok, Accepted)
    assert isinstance(bad, Rejected) and "ahead of the gateway clock" in bad.reason
    assert bad.count_seq is True   # the sample arrived; it is not missing


def test_unset_clock_is_rejected():
    v = check("envbox/v1/sj-001/data", payload(t_unix=EPOCH_2020))
    assert isinstance(v, Rejected) and "clock was not set" in v.reason


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_never_raise(data):
    v = check("envbox/v1/sj-001/data", data)
    assert isinstance(v, (Accepted, Rejected))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 300))
def test_corrupted_valid_payloads_never_raise(junk, at):
    p = payload(CH_PM25=17, CH_TEMP=-1234, CH_RH=5000)
    at = at % (len(p) + 1)
    v = check("envbox/v1/sj-001/data", p[:at] + junk + p[at + len(junk):])
    assert isinstance(v, (Accepted, Rejected))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31),
       st.dictionaries(st.sampled_from(["CH_PM25", "CH_TEMP", "CH_CO", "CH_NOISE"]),
                       st.integers(-(2**31), 2**31)))
def test_any_encodable_sample_in_range_is_accepted(seq, age_s, channels):
    t = int(NOW) - age_s
    if t <= EPOCH_2020:
        return
    v = check("envbox/v1/sj-001/data", payload(seq=seq, t_unix=t, **channels))
    assert isinstance(v, Accepted) and v.seq == seq and v.t_utc_s == t


def test_topic_with_other_prefix_levels():
    # the device level is wherever the `+` is in the configured topic
    v = check_message("fleet/x/sj-001/data", payload(), 2, NOW, 86400)
    assert isinstance(v, Accepted)
    v = check_message("short", payload(), 2, NOW, 86400)
    assert isinstance(v, Rejected) and "device mismatch" in v.reason


def test_check_uses_the_wall_clock_by_default_nowhere():
    # check_message takes `now` explicitly: validation is reproducible, never reads the clock
    v = check_message("envbox/v1/sj-001/data", payload(t_unix=int(time.time()) + 10 * 86400),
                      IDX, time.time() + 20 * 86400, 86400)
    assert isinstance(v, Accepted)


# --- batches: check_payload's shortcut for the singles of a batch ----------------------------

@st.composite
def batch_payloads(draw):
    """A KIND_BATCH payload built with the firmware's BatchEncoder: random device id bytes
    (sometimes not a valid id), times around NOW (some unset, some ahead), and channel values
    up to 2^43, beyond what a single's 6-byte varint can carry."""
    dev = draw(st.one_of(st.sampled_from([b"sj-001", b"box 1", b"a/b", b"\xc3\xa9", b"#"]),
                         st.binary(min_size=1, max_size=32)))
    n = draw(st.integers(1, 12))
    t0 = draw(st.sampled_from([EPOCH_2020, EPOCH_2020 + 5, int(NOW) - 86400, int(NOW),
                               int(NOW) + 86400 - 30]))
    seq0 = draw(st.integers(0, 2**32 - 1 - 1000))
    buf = bytearray(4096)
    e = wire.BatchEncoder(buf, 10)
    big = draw(st.sampled_from([900, 2**30, 2**40, 2**43]))
    for k in range(n):
        s = wire.Sample(dev)
        s.seq = seq0 + k * draw(st.integers(1, 3))
        s.t_s2020 = max(0, t0 - EPOCH_2020 + 10 * k + draw(st.integers(-3, 3)))
        s.fix_quality = draw(st.sampled_from([0, 1]))
        if s.fix_quality:
            s.sats, s.hdop_x10 = 7, 12
            s.lat_e7, s.lon_e7 = draw(st.integers(-900_000_000, 900_000_000)), 1_164_000_000
            s.alt_dm, s.speed_kmh_x10, s.course_x10 = 400, 300, wire.COURSE_UNKNOWN
        for ch in draw(st.lists(st.integers(0, wire.N_CHANNELS - 1), max_size=6)):
            s.set(ch, draw(st.sampled_from([0, 1, 2, 4])), draw(st.integers(-big, big)))
        if k == 0:
            e.begin(s)
        if not e.add(s):
            break
    return bytes(buf[:e.finish()])


@settings(max_examples=400, deadline=None)
@given(batch_payloads(), st.sampled_from(["sj-001", "box 1", "other"]))
def test_batch_shortcut_gives_what_checking_each_single_gives(payload, topic_dev):
    singles = wire.singles(payload)
    if len(singles) == 1 and singles[0] is payload:
        return      # not a well-formed batch: dead-lettered whole, tested elsewhere
    topic = f"envbox/v1/{topic_dev}/data"
    got = check_payload(topic, payload, IDX, NOW, 86400)
    want = [check_message(topic, one, IDX, NOW, 86400) for one in singles]
    for i, w in enumerate(want):
        if isinstance(w, Rejected):
            w.reason = f"batch sample {i + 1}/{len(want)}: {w.reason}"
    assert got == want


def test_batch_sample_with_a_value_too_long_for_a_single_is_malformed_alone():
    s = wire.Sample(b"sj-001")
    s.seq, s.t_s2020 = 1, int(NOW) - 600 - EPOCH_2020
    buf = bytearray(1024)
    e = wire.BatchEncoder(buf, 10)
    e.begin(s)
    for k, v in enumerate([5, 2**40, 2**41, 2**40]):   # the differences fit, 2^41 alone does not
        s.seq, s.t_s2020 = 1 + k, s.t_s2020 + 10
        s.set(wire.CH_PM25, wire.STATUS_OK, v)
        assert e.add(s)
    payload = bytes(buf[:e.finish()])
    got = check_payload("envbox/v1/sj-001/data", payload, IDX, NOW, 86400)
    assert [type(v).__name__ for v in got] == ["Accepted", "Accepted", "Rejected", "Accepted"]
    assert got[2].reason.startswith("batch sample 3/4: malformed:")


# --- the inbox between paho's network thread and the committer --------------------------------

def test_inbox_take_bounds_a_group_by_messages_and_by_samples():
    box = Inbox(max_messages=100, max_bytes=1 << 20)
    for k in range(5):
        assert box.put(("single", k), 10, 1)
    assert box.take(3, 1000, 0.0, 0.0) == [("single", 0), ("single", 1), ("single", 2)]
    for k in range(3):
        box.put(("batch", k), 100, 60)
    # samples: the message that reaches the bound is in the group, the next is not
    got = box.take(100, 61, 0.0, 0.0)
    assert got == [("single", 3), ("single", 4), ("batch", 0)]
    assert len(box) == 2 and box.bytes == 200 and box.samples == 120
    assert box.take(100, 1000, 0.0, 0.0) == [("batch", 1), ("batch", 2)]
    assert box.take(100, 1000, 0.0, 0.0) == [] and box.bytes == 0 and box.samples == 0


def _take_in_thread(box, *args):
    out = {}

    def run():
        t = time.monotonic()
        out["group"] = box.take(*args)
        out["s"] = time.monotonic() - t

    th = threading.Thread(target=run)
    th.start()
    return th, out


def test_inbox_take_returns_when_its_group_is_complete_before_its_window():
    box = Inbox(max_messages=100, max_bytes=1 << 20)
    window_s = 30.0
    th, out = _take_in_thread(box, 4, 1000, window_s, window_s)
    for k in range(6):
        box.put(k, 1, 1)
        time.sleep(0.01)
    th.join(window_s + 5)
    assert out["group"] == [0, 1, 2, 3]
    assert out["s"] < window_s           # woken by the 4th message, not by the window
    assert box.take(100, 1000, 0.0, 0.0) == [4, 5]


def test_inbox_take_is_woken_by_a_full_inbox_and_goes_on_collecting():
    # a group larger than the inbox: each put() that finds the inbox full wakes the committer,
    # which empties it and waits for the rest of its group
    box = Inbox(max_messages=3, max_bytes=1 << 20)
    window_s = 30.0
    box.put(0, 1, 1)
    th, out = _take_in_thread(box, 10, 1000, window_s, window_s)
    for k in range(1, 12):
        assert box.put(k, 1, 1)          # waits for room while the inbox is full
    th.join(window_s + 5)
    assert out["s"] < window_s           # not left waiting for the window
    assert out["group"] == list(range(10))
    assert box.take(10, 1000, 0.0, 0.0) == [10, 11]


def test_inbox_put_gives_up_when_told_to():
    box = Inbox(max_messages=1, max_bytes=1 << 20)
    box.put(0, 1, 1)
    idled = []
    assert box.put(1, 1, 1, idle=lambda: idled.append(1),
                   keep_waiting=lambda: len(idled) < 2) is False
    assert len(box) == 1 and box.full_waits == 1
