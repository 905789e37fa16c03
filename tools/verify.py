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
    slots: dict[int, dict]          # t -> {"gnss": rec or None, "pms5003": rec or None}
    first_slot: int
    last_slot: int


def expected_from_truth(path: str, run_until_s: int, period_s: int = 10) -> Expected:
    recs = read_ground_truth(path)
    gnss = {r["t"]: r for r in recs if r.get("kind") == "gnss"}
    pms: dict[int, dict] = {}
    for r in recs:
        if r.get("kind") == "pms5003":
            pms.setdefault(r["slot"], r)   # first answer of a slot (one request per sample)
    if not pms:
        raise RuntimeError("ground truth holds no PMS5003 answer: the firmware never sampled")
    first = min(pms)
    last = int(run_until_s) // period_s * period_s
    slots = {t: {"gnss": gnss.get(t), "pms5003": pms.get(t)}
             for t in range(first, last + 1, period_s)}
    return Expected(slots, first, last)


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


def compare(exp: Expected, rows: dict[int, dict], warmup_grace_s: int = 60) -> Report:
    """Check `rows` (t -> fields) against the ground truth. Status-only failures are exact:
    a channel the ground truth says failed must be stored with that status and no value."""
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
        p = truth["pms5003"]
        if p is None:
            rep.mismatches.append(f"t={t}: no PMS5003 answer in the truth for a produced slot")
            continue
        for name, _ in _PMS_CHANNELS:
            st_field = name + "_status"
            if st_field not in row:
                rep.mismatches.append(f"t={t} {name}: no status stored")
                continue
            st = int(row[st_field])
            want = STATUS_CODE.get(p["status"], -1)
            if st == STATUS_CODE["warming_up"] and t - exp.first_slot < warmup_grace_s:
                # the firmware's own warm-up timer starts when it boots; allowed at the start
                rep.warming_up += 1
                continue
            if st != want:
                rep.mismatches.append(f"t={t} {name}: status {wire.STATUS_NAMES[st]}, "
                                      f"truth {p['status']}")
                continue
            if wire.status_has_value(st):
                if name not in row or int(round(row[name])) != p[name]:
                    rep.mismatches.append(f"t={t} {name}: stored {row.get(name)!r}, "
                                          f"truth {p[name]}")
            elif name in row:
                rep.mismatches.append(f"t={t} {name}: a value stored for status "
                                      f"{wire.STATUS_NAMES[st]}")
    return rep


_PMS_CHANNELS = [(n, s) for n, s in wire.CHANNELS
                 if n.startswith(("pm1", "pm25", "pm10", "n03", "n05", "n10", "n25", "n50",
                                  "n100"))]


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
