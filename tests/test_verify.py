"""The ground-truth check itself must catch what it is there to catch: a missing or extra sample,
a wrong value, a position off by one unit, a failure stored as a number, a wrong status."""

import json

import pytest

from envbox import verify

T0 = 1764300000


def _truth(tmp_path, n=6, no2_silent=()):
    recs = []
    for k in range(n):
        t = T0 + 10 * k
        recs.append({"kind": "gnss", "t": t, "fix_quality": 1, "status": "A",
                     "lat_e7": 398900000 + k, "lon_e7": 1164600000 - k, "alt_dm": 412,
                     "speed_kmh_x10": 283, "course_x10": None if k == 2 else 1805, "sats": 9,
                     "hdop_x10": 11})
        pms = {n: 10 + k for n, _, _ in verify.CHANNEL_TRUTH["pms5003"]}
        recs.append({"kind": "pms5003", "slot": t, "t_virtual": t + 0.1,
                     "status": "checksum_error" if k == 4 else "ok", **pms})
        if k not in no2_silent:
            recs.append({"kind": "ze03_no2", "slot": t, "mode": "qa", "status": "ok",
                         "no2_ppb": 31.0 + k})
    p = tmp_path / "gt.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(p)


def _rows(n=6):
    rows = {}
    for k in range(n):
        t = T0 + 10 * k
        r = {"seq": float(k), "fix_quality": 1.0, "lat_deg": (398900000 + k) / 1e7,
             "lon_deg": (1164600000 - k) / 1e7, "alt_m": 41.2, "speed_kmh": 28.3, "sats": 9.0,
             "hdop": 1.1, "no2_ppb": 31.0 + k, "no2_ppb_status": 0.0}
        if k != 2:
            r["course_deg"] = 180.5
        for name, _, _ in verify.CHANNEL_TRUTH["pms5003"]:
            if k == 4:
                r[name + "_status"] = 3.0
            else:
                r[name] = float(10 + k)
                r[name + "_status"] = 0.0
        rows[t] = r
    return rows


@pytest.fixture
def exp(tmp_path):
    return verify.expected_from_truth(_truth(tmp_path), T0 + 50)


def test_exact_rows_pass(exp):
    rep = verify.compare(exp, _rows())
    assert rep.ok, rep.mismatches
    assert rep.summary_line() == "samples: produced=6 stored=6 missing=0 extra=0"


@pytest.mark.parametrize("tamper, expect", [
    (lambda r: r.pop(T0 + 20), "missing"),
    (lambda r: r.__setitem__(T0 + 60, dict(r[T0])), "extra"),
    (lambda r: r[T0 + 10].__setitem__("pm25_ugm3", 12.0), "pm25_ugm3"),
    (lambda r: r[T0 + 10].__setitem__("lat_deg", r[T0 + 10]["lat_deg"] + 1e-7), "lat_deg"),
    (lambda r: r[T0 + 40].__setitem__("pm25_ugm3", 0.0), "a value stored"),
    (lambda r: r[T0 + 30].__setitem__("pm25_ugm3_status", 2.0), "status no_data"),
    (lambda r: r[T0 + 20].__setitem__("course_deg", 0.0), "for unknown"),
    (lambda r: r[T0 + 30].__setitem__("no2_ppb", 36.0), "no2_ppb"),  # tolerance is 1 ppb
    (lambda r: r[T0 + 30].pop("no2_ppb_status"), "no status"),
])
def test_tampered_rows_are_caught(exp, tamper, expect):
    rows = _rows()
    tamper(rows)
    rep = verify.compare(exp, rows, warmup_grace_s=0)
    assert not rep.ok
    found = [str(x) for x in rep.missing + rep.extra] + rep.mismatches
    if expect == "missing":
        assert rep.missing == [T0 + 20]
    elif expect == "extra":
        assert rep.extra == [T0 + 60]
    else:
        assert any(expect in m for m in found), found


def test_warming_up_is_accepted_only_at_the_start(exp):
    rows = _rows()
    rows[T0]["no2_ppb_status"] = 1.0
    del rows[T0]["no2_ppb"]
    assert verify.compare(exp, rows, warmup_grace_s=30).ok
    rows[T0 + 50]["no2_ppb_status"] = 1.0
    del rows[T0 + 50]["no2_ppb"]
    assert not verify.compare(exp, rows, warmup_grace_s=30).ok


def test_a_module_that_sent_nothing_must_be_stored_as_failed(tmp_path):
    # the model recorded no ZE03 answer for slot T0 + 30: the box must store a status without a
    # value there (the driver's no_data), never a number
    exp = verify.expected_from_truth(_truth(tmp_path, no2_silent=(3,)), T0 + 50)
    rows = _rows()
    rows[T0 + 30]["no2_ppb_status"] = 2.0        # no_data
    del rows[T0 + 30]["no2_ppb"]
    assert verify.compare(exp, rows).ok
    rows[T0 + 30]["no2_ppb"] = 34.0              # a value the module never sent
    rep = verify.compare(exp, rows)
    assert any("no ze03_no2 answer in the truth" in m for m in rep.mismatches), rep.mismatches
    rows = _rows()                               # ok with the slot's value: invented as well
    rep = verify.compare(exp, rows)
    assert any("no ze03_no2 answer in the truth" in m for m in rep.mismatches), rep.mismatches
    del rows[T0 + 30]["no2_ppb_status"]
    rep = verify.compare(exp, rows)
    assert any("no status stored" in m for m in rep.mismatches), rep.mismatches


def test_a_late_request_belongs_to_the_slot_it_was_made_for(tmp_path):
    """The box waits up to fix_wait_ms past its slot for that second's fix, then asks the PMS5003
    (seen in CI: slot T0+20 requested 7.76 s late, at the model's nearest grid second T0+30, with
    T0+30's own request 2.6 s after it). The late answer is slot T0+20's; T0+30 keeps its own."""
    path = _truth(tmp_path)
    recs = [json.loads(x) for x in open(path)]
    late = next(r for r in recs if r["kind"] == "pms5003" and r["slot"] == T0 + 20)
    late.update(slot=T0 + 30, t_virtual=T0 + 27.76)     # the model's slot: the nearest second
    recs.sort(key=lambda r: r.get("t_virtual", r.get("t", r.get("slot"))))
    (tmp_path / "late.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    exp = verify.expected_from_truth(str(tmp_path / "late.jsonl"), T0 + 50)
    assert exp.slots[T0 + 20]["pms5003"]["t_virtual"] == T0 + 27.76
    assert exp.slots[T0 + 30]["pms5003"]["t_virtual"] == T0 + 30.1
    assert verify.compare(exp, _rows()).ok
    # a request that early is still its own slot's (a box on network time, up to 0.5 s early)
    assert verify.request_slot(T0 + 29.4) == T0 + 30 == verify.request_slot(T0 + 38.4)
    assert verify.request_slot(T0 + 38.6) == T0 + 40
