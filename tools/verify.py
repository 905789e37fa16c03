"""Compare what a database holds with the simulator's ground truth.

Used by `envbox demo` and the end-to-end tests. Reads InfluxDB 1.x (InfluxQL over /query) or
VictoriaMetrics (/api/v1/export), pivots the rows to one dict per sample time, and checks every
ground-truth sample: present, at the right timestamp, with the right position and values (to the
sensor's resolution: integers on the wire, so exact), with the right status; and nothing extra.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from . import parts
from .firmware import wire
from .simulator.truth import read_ground_truth

MEASUREMENT = "envbox"
STATUS_CODE = {name: i for i, name in enumerate(wire.STATUS_NAMES)}
GNSS_FIELDS = (  # (DB field, ground-truth key, scale back to the integer)
    ("lat_deg", "lat_e7", 10_000_000),
    ("lon_deg", "lon_e7", 10_000_000),
    ("alt_m", "alt_dm", 10),
    ("speed_kmh", "speed_kmh_x10", 10),
    ("course_deg", "course_x10", 10),
    ("hdop", "hdop_x10", 10),
    ("sats", "sats", 1),
    ("fix_quality", "fix_quality", 1),
)


# --------------------------------------------------------------------------- reading databases

def read_influx1(url: str, db: str, device: str, start_s: int | None = None,
                 end_s: int | None = None) -> dict[int, dict]:
    q = f"SELECT * FROM {MEASUREMENT} WHERE device = '{device}'"
    if start_s is not None:
        q += f" AND time >= {int(start_s)}s"
    if end_s is not None:
        q += f" AND time <= {int(end_s)}s"
    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "s"}).encode()
    with urllib.request.urlopen(url.rstrip("/") + "/query", data=data, timeout=60) as r:
        res = json.load(r)
    rows: dict[int, dict] = {}
    for result in res.get("results", []):
        if "error" in result:
            raise RuntimeError(result["error"])
        for s in result.get("series", []):
            cols = s["columns"]
            for v in s["values"]:
                row = {c: x for c, x in zip(cols, v) if x is not None}
                t = int(row.pop("time"))
                row.pop("device", None)
                rows[t] = row
    return rows


def read_victoriametrics(url: str, device: str, start_s: int | None = None,
                         end_s: int | None = None) -> dict[int, dict]:
    base = url.rstrip("/")
    with urllib.request.urlopen(base + "/internal/force_flush", timeout=30) as r:
        r.read()
    params = {"match[]": '{__name__=~"%s_.*",device="%s"}' % (MEASUREMENT, device)}
    if start_s is not None:
        params["start"] = str(int(start_s))
    if end_s is not None:
        params["end"] = str(int(end_s))
    with urllib.request.urlopen(base + "/api/v1/export?" + urllib.parse.urlencode(params),
                                timeout=120) as r:
        lines = r.read().splitlines()
    rows: dict[int, dict] = {}
    prefix = MEASUREMENT + "_"
    for line in lines:
        if not line.strip():
            continue
        obj = json.loads(line)
        name = obj["metric"]["__name__"][len(prefix):]
        for v, ts in zip(obj["values"], obj["timestamps"]):
            rows.setdefault(ts // 1000, {})[name] = v
    return rows


# --------------------------------------------------------------------------- ground truth

@dataclass
class Expected:
    slots: dict[int, dict]          # t -> {"gnss": rec or None, kind: rec, ..., "noise_polls": [...]}
    first_slot: int
    last_slot: int
    kinds: set                      # module kinds present in the run (besides gnss)


def request_slot(t_virtual: float, period_s: int = 10, early_s: float = 1.5) -> int:
    """The grid slot a read request at t_virtual was made for: the last one begun at most
    `early_s` after it."""
    return int((t_virtual + early_s) // period_s) * period_s


# Query-answer records: which record of a slot is the one the firmware's sample used.
_QA_MODES = (None, "qa", "query")


def expected_from_truth(path: str, run_until_s: int, period_s: int = 10) -> Expected:
    recs = read_ground_truth(path)
    gnss = {r["t"]: r for r in recs if r.get("kind") == "gnss"}
    per_kind: dict[str, dict[int, dict]] = {}
    polls = []
    for r in recs:
        k = r.get("kind")
        if k in (None, "gnss"):
            continue
        if k == "modbus_noise":
            polls.append(r)
            continue
        if r.get("mode") not in _QA_MODES:
            continue        # active-mode frames before the driver switched the module to Q&A
        slots = per_kind.setdefault(k, {})
        if k == "pms5003":
            # one read request per sample: the first answer. The box requests at its slot
            # second, or later while it waits for that second's fix (fix_wait_ms: up to 5 s of
            # virtual time on the sim board, plus the host's lag); the model's `slot` is the
            # nearest grid second (whose air it reports), so a request more than 5 s late carries
            # the next one. The sample it belongs to is the last slot begun 1.5 s before it (a box
            # on network time may be up to 0.5 s early).
            slot = request_slot(r["t_virtual"], period_s)
            slots.setdefault(slot, r if slot == r["slot"] else {**r, "slot": slot})
        else:
            slots[r["slot"]] = r             # retries within a slot: the last answer counts
    pms = per_kind.get("pms5003")
    if not pms:
        raise RuntimeError("ground truth holds no PMS5003 answer: the firmware never sampled")
    first = min(pms)
    last = int(run_until_s) // period_s * period_s
    slots = {}
    for t in range(first, last + 1, period_s):
        e = {"gnss": gnss.get(t)}
        for k, by_slot in per_kind.items():
            e[k] = by_slot.get(t)
        if polls:
            e["noise_polls"] = [p for p in polls if t - period_s - 6 < p["t_virtual"] <= t + 6]
            # the firmware requests every module at the same instant: the PMS5003's request
            # times bound the noise driver's window, (request of t - period, request of t]
            prev, cur = pms.get(t - period_s), pms.get(t)
            if prev and cur:
                e["noise_window"] = (prev["t_virtual"], cur["t_virtual"])
        slots[t] = e
    kinds = set(per_kind) | ({"modbus_noise"} if polls else set())
    return Expected(slots, first, last, kinds)


# --------------------------------------------------------------------------- comparison

@dataclass
class Report:
    produced: int = 0
    stored: int = 0
    missing: list = field(default_factory=list)
    extra: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)
    warming_up: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and not self.mismatches

    def summary_line(self) -> str:
        return (f"samples: produced={self.produced} stored={self.stored} "
                f"missing={len(self.missing)} extra={len(self.extra)}")


def _int_of(v, scale):
    return int(round(float(v) * scale))


def compare(exp: Expected, rows: dict[int, dict], warmup_grace_s: int = 200) -> Report:
    """Check `rows` (t -> fields) against the ground truth. Status-only failures are exact:
    a channel the ground truth says failed must be stored with that status and no value.
    `warmup_grace_s`: from the first sample, a stored warming_up is accepted where the module
    already answered (the firmware's warm-up timers start at its boot; the longest is 180 s)."""
    rep = Report(produced=len(exp.slots))
    rep.extra = sorted(t for t in rows if t not in exp.slots)
    rep.stored = len(rows)
    rep.missing = sorted(t for t in exp.slots if t not in rows)
    for t, truth in exp.slots.items():
        row = rows.get(t)
        if row is None:
            continue
        g = truth["gnss"]
        if g and g.get("fix_quality", 0) > 0 and g.get("status", "A") == "A":
            for fld, key, scale in GNSS_FIELDS:
                if g[key] is None:   # e.g. course while standing still: must not be stored
                    if fld in row:
                        rep.mismatches.append(f"t={t} {fld}: stored {row[fld]!r} for unknown")
                    continue
                if fld not in row or _int_of(row[fld], scale) != g[key]:
                    rep.mismatches.append(f"t={t} {fld}: stored {row.get(fld)!r}, truth {g[key]}")
        elif row.get("fix_quality", 0) not in (0, 0.0) or "lat_deg" in row:
            rep.mismatches.append(f"t={t}: position stored without a valid fix in the truth")
        for kind in sorted(exp.kinds):
            if kind == "modbus_noise":
                _check_noise(rep, t, row, truth.get("noise_polls") or [], exp, warmup_grace_s,
                             truth.get("noise_window"))
                continue
            rec = truth.get(kind)
            if rec is None:
                _check_unanswered(rep, t, row, kind)
                continue
            for name, key, tol in CHANNEL_TRUTH.get(kind, ()):
                _check_channel(rep, t, row, name, rec, key, tol, exp, warmup_grace_s)
    return rep


def _check_unanswered(rep, t, row, kind) -> None:
    """The module sent no answer for slot t (the simulator records every answer it sends: a
    request that missed its window on a loaded host, a bus that did not carry it): the box must
    say so, with a status that carries no value and no value, on each of the part's channels."""
    for name, _, _ in CHANNEL_TRUTH.get(kind, ()):
        st = row.get(name + "_status")
        if st is None:
            rep.mismatches.append(f"t={t} {name}: no status stored")
        elif name in row or wire.status_has_value(int(st)):
            rep.mismatches.append(f"t={t} {name}: {wire.STATUS_NAMES[int(st)]} with a value, "
                                  f"but no {kind} answer in the truth for this slot")


def _channel_truth() -> dict[str, list[tuple[str, str, int]]]:
    """part -> [(channel, ground-truth key, tolerance in wire units)], from the registry: the
    channels the part's driver fills (the truth names its values the same way) and its model's
    TRUTH_TOLERANCE (0 where the wire carries exactly the integer the module sent; 1 LSB where
    the driver converts and the truth holds the rounded physical value). The GNSS receiver and
    the noise meter (polled within a window) are checked on their own."""
    out = {}
    for p in parts.PARTS.values():
        if p.name in ("gnss", "modbus_noise"):
            continue
        tol = p.model_class().TRUTH_TOLERANCE
        out[p.name] = [(ch, ch, tol) for ch in p.channels]
    return out


CHANNEL_TRUTH = _channel_truth()
SCALE = dict(wire.CHANNELS)


def _status_ok(rep, t, row, name, truth_status, exp, grace) -> int | None:
    """Compare the stored status with the truth; return the stored code when values must be
    compared next, None otherwise."""
    st_field = name + "_status"
    if st_field not in row:
        rep.mismatches.append(f"t={t} {name}: no status stored")
        return None
    st = int(row[st_field])
    if st == STATUS_CODE["warming_up"] and t - exp.first_slot < grace:
        # the firmware's warm-up timers start when it boots, after the modules powered up
        rep.warming_up += 1
        return None
    if st != STATUS_CODE.get(truth_status, -1):
        rep.mismatches.append(f"t={t} {name}: status {wire.STATUS_NAMES[st]}, truth {truth_status}")
        return None
    if not wire.status_has_value(st):
        if name in row:
            rep.mismatches.append(f"t={t} {name}: a value stored for status "
                                  f"{wire.STATUS_NAMES[st]}")
        return None
    if name not in row:
        rep.mismatches.append(f"t={t} {name}: status {wire.STATUS_NAMES[st]} without a value")
        return None
    return st


def _check_channel(rep, t, row, name, rec, key, tol, exp, grace):
    if _status_ok(rep, t, row, name, rec["status"], exp, grace) is None:
        return
    scale = SCALE[name]
    got = int(round(float(row[name]) * scale))
    want = int(round(float(rec[key]) * scale))
    if abs(got - want) > tol:
        rep.mismatches.append(f"t={t} {name}: stored {row[name]!r}, truth {rec[key]}")


def _check_noise(rep, t, row, polls, exp, grace, window=None):
    """The noise meter is polled about once a second and the driver reports the energy average
    (LAeq) and the extremes of the polls since the previous sample time; when every poll of a
    window failed it asks once more and waits for that answer. Which polls near the window's
    edges the driver counted is not in the truth, so the check is made of bounds: the status is
    ok when polls well inside the window answered, and otherwise ok or a failure that happened
    near the window; Lmin and Lmax are polled levels with
    Lmin <= LAeq <= Lmax; and LAeq is the energy average of the polls between the previous and
    this request (the PMS5003's request times in the truth), give or take polls at the edges."""
    import math
    near = [p for p in polls if p["t_virtual"] <= t + 6]
    ok_polls = [p for p in near if p.get("status") == "ok"]
    inside_ok = [p for p in ok_polls if t - 9 < p["t_virtual"] <= t - 1]
    st_field = "noise_dba_status"
    if not inside_ok and st_field in row and int(row[st_field]) not in (0, 1):
        # every poll well inside the window failed: a failure status is right, provided such a
        # failure happened near the window
        got_st = wire.STATUS_NAMES[int(row[st_field])]
        seen = {p.get("status") for p in near} | {"no_data"}
        if got_st not in seen:
            rep.mismatches.append(f"t={t} noise_dba: status {got_st}, polls near the window "
                                  f"were {sorted(seen)}")
        elif "noise_dba" in row:
            rep.mismatches.append(f"t={t} noise_dba: a value stored for status {got_st}")
        return
    want_status = "ok" if ok_polls else "no_data"
    if _status_ok(rep, t, row, "noise_dba", want_status, exp, grace) is None:
        return
    levels = [p["noise_dba"] for p in ok_polls]
    got = float(row["noise_dba"])
    lo, hi = float(row.get("noise_lmin_dba", -1)), float(row.get("noise_lmax_dba", -1))
    eps = 0.051
    if not (min(levels) - eps <= lo <= got + eps and got - eps <= hi <= max(levels) + eps):
        rep.mismatches.append(f"t={t} noise: Lmin {lo} / LAeq {got} / Lmax {hi} outside the "
                              f"polled levels {min(levels)}..{max(levels)}")
        return
    if window is None:
        return
    # A poll counts in the window when its answer was parsed before the request; the answer
    # comes RESPONSE_S after the query the truth timestamps, and the io loop notices it a little
    # later: polls within EDGE_S of either edge may fall on either side.
    a, b = window
    inner = [p for p in ok_polls if a + EDGE_S < p["t_virtual"] + RESPONSE_S <= b - EDGE_S]
    edges = [p for p in ok_polls
             if abs(p["t_virtual"] + RESPONSE_S - a) <= EDGE_S
             or abs(p["t_virtual"] + RESPONSE_S - b) <= EDGE_S]
    if len(inner) < 3:
        # a window where (nearly) every poll failed: the driver asked once more at the request
        # and may report that later answer, which the truth places in the next window
        return
    fixed = [p["noise_dba"] for p in inner]
    edge_levels = [p["noise_dba"] for p in edges][:8]
    lo_l, hi_l = math.inf, -math.inf
    for mask in range(1 << len(edge_levels)):
        win = fixed + [x for i, x in enumerate(edge_levels) if mask >> i & 1]
        if win:
            v = 10 * math.log10(sum(10 ** (x / 10) for x in win) / len(win))
            lo_l, hi_l = min(lo_l, v), max(hi_l, v)
    if lo_l <= hi_l and not lo_l - 0.051 <= got <= hi_l + 0.051:
        rep.mismatches.append(f"t={t} noise_dba: stored {got}, energy average of the window's "
                              f"polls between {lo_l:.2f} and {hi_l:.2f}")


RESPONSE_S = 0.03   # simulator/models/modbus_noise.py: the meter answers 30 ms after a query
EDGE_S = 1.5   # host latency at warp 30-60 moves a request by up to about a virtual second


def channel_table(rows: dict[int, dict]) -> list[tuple]:
    """(channel, ok count, flagged count, min, mean, max) for every channel seen in `rows`."""
    out = []
    for name, _ in wire.CHANNELS:
        vals = [r[name] for r in rows.values() if name in r and r.get(name + "_status") == 0]
        flagged = sum(1 for r in rows.values()
                      if name + "_status" in r and r[name + "_status"] != 0)
        if not vals and not flagged:
            continue
        if vals:
            out.append((name, len(vals), flagged, min(vals), sum(vals) / len(vals), max(vals)))
        else:
            out.append((name, 0, flagged, None, None, None))
    return out
