"""Line protocol: how a spooled sample becomes a line for InfluxDB (the gateway's serializer).

docs/contracts.md "InfluxDB schema": measurement `envbox`, tag `device`, the box's time in
seconds, every numeric field a float. sample_point() defines it as an influxdb_client Point;
LineBuilder produces the same text without the library, about 4x cheaper, escaping as the
library does (restated below, compared with it in tests/test_gateway_lines.py).
"""

from __future__ import annotations

# influxdb_client is imported only in sample_point (the definition, for tests and the
# benchmark's baseline): importing it costs about 28 MB of resident memory (measured: 12 -> 40
# MB), more than a third of the gateway's, and LineBuilder does not need it.

from envbox.firmware import wire

STATUS_CODES = {name: float(i) for i, name in enumerate(wire.STATUS_NAMES)}


def sample_point(measurement: str, d: dict):
    """A decoded wire sample (wire.decode) as an influxdb_client Point, per docs/contracts.md:
    the definition LineBuilder's output is tested against."""
    from influxdb_client import Point, WritePrecision
    p = Point(measurement).tag("device", d["device"]).time(d["t_utc_s"], WritePrecision.S)
    p.field("seq", float(d["seq"]))
    p.field("flags", float(d["flags"]))
    g = d["gps"]
    if g:
        for k in ("lat_deg", "lon_deg", "alt_m", "speed_kmh", "course_deg", "sats", "hdop",
                  "fix_quality"):
            if g[k] is not None:       # course is unknown while standing still
                p.field(k, float(g[k]))
    else:
        p.field("fix_quality", 0.0)
    for name, ch in d["channels"].items():
        if ch["value"] is not None:
            p.field(name, float(ch["value"]))
        p.field(name + "_status", STATUS_CODES[ch["status"]])
    return p


# Every field a sample can have, in the order line protocol lists them: influxdb-client's
# _append_fields sorts fields by name, and the lines built below must be byte-identical to its.
_GPS_FIELDS = ("lat_deg", "lon_deg", "alt_m", "speed_kmh", "course_deg", "sats", "hdop",
               "fix_quality")
_ALL_FIELDS = sorted(("seq", "flags") + _GPS_FIELDS
                     + tuple(n for n, _scale in wire.CHANNELS)
                     + tuple(n + "_status" for n, _scale in wire.CHANNELS))
_SLOT = {name: i for i, name in enumerate(_ALL_FIELDS)}
_SEQ, _FLAGS, _FIXQ = _SLOT["seq"], _SLOT["flags"], _SLOT["fix_quality"]
_GPS_SLOTS = tuple(_SLOT[k] for k in _GPS_FIELDS)
_CH_SLOTS = tuple((_SLOT[n], _SLOT[n + "_status"], scale)
                  for n, scale in wire.CHANNELS)
_STATUS_TEXT = tuple(str(i) for i in range(len(wire.STATUS_NAMES)))   # float(i), formatted
_FLAGS_TEXT = tuple(str(i) for i in range(256))
_NOT_FITTED, _OK, _OUT_OF_RANGE = wire.STATUS_NOT_FITTED, wire.STATUS_OK, wire.STATUS_OUT_OF_RANGE


# influxdb-client's line-protocol escaping (influxdb_client/client/write/point.py: _ESCAPE_KEY,
# _ESCAPE_MEASUREMENT, _escape_key, _escape_tag_value, _append_tags), restated so the writer
# does not load the library (see the top of this file). tests/test_gateway_lines.py compares
# LineBuilder's lines with the library's Point.to_line_protocol() on random and escaping-hungry device names
# and measurements, so a difference, or a library release that escapes otherwise, fails there.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                                     "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                             "\r": r"\r"})


def _escape_key(key: str, table=_ESCAPE_KEY) -> str:
    return str(key).translate(table)


def _tag(key: str, value: str) -> str:
    """One tag as _append_tags writes it: ",key=value " ("" for an empty key or value; a value
    ending in a backslash gets a space so the backslash escapes nothing)."""
    k, v = _escape_key(key), _escape_key(value)
    if v.endswith("\\"):
        v += " "
    return f",{k}={v} " if k and v else " "


class LineBuilder:
    """Line protocol of spooled payloads: the exact text of
    sample_point(measurement, wire.decode(payload)).to_line_protocol(), about 4x cheaper.

    Profiling the writer showed a Point per sample costing more than the rest of the gateway's
    work on that sample: wire.decode builds nested dicts, and Point.to_line_protocol escapes all
    ~36 field keys and type-checks every value again for every sample. Here the escaping is
    influxdb-client's (restated above, _escape_key/_tag), applied once per field name and once
    per device and cached; the payload is read with
    wire.decode_into into one reused Sample (rows in the spool were validated by wire.decode at
    ingest); values are formatted as _append_fields formats a float (str(), a trailing ".0"
    trimmed; every value here is a ratio of integers, never NaN or infinite, which
    _append_fields would leave out). tests/test_gateway_lines.py compares the two on random
    samples, so a library upgrade that changes its output fails there.
    """

    def __init__(self, measurement: str, max_devices: int = 200_000):
        self.measurement = measurement
        self._meas = _escape_key(measurement, _ESCAPE_MEASUREMENT)
        self._keys = [_escape_key(k) + "=" for k in _ALL_FIELDS]
        self._prefix: dict[str, str] = {}
        self._max_devices = max_devices
        self._s = wire.Sample()
        self._vals: list = [""] * len(_ALL_FIELDS)
        self._plans: dict[tuple, tuple[int, ...]] = {}

    def prefix(self, device: str) -> str:
        p = self._prefix.get(device)
        if p is None:
            if len(self._prefix) >= self._max_devices:   # bound the cache on huge fleets
                self._prefix.clear()
            p = self._meas + _tag("device", device)
            self._prefix[device] = p
        return p

    def line(self, device: str, payload: bytes) -> str:
        s = self._s
        wire.decode_into(s, payload, len(payload))
        vals = self._vals      # slot -> the value's text; only the slots in `plan` are read
        # Values are formatted as _append_fields formats float(x): str(), ".0" trimmed. For an
        # integer below 1e16 (seq, sats, raw values of scale 1: all below 2^35) that is str(int).
        vals[_SEQ] = str(s.seq)
        vals[_FLAGS] = _FLAGS_TEXT[s.flags]
        fq = s.fix_quality
        course = fq and s.course_x10 != wire.COURSE_UNKNOWN
        if fq:
            lat, lon, alt, spd, crs, sats, hdop, fqs = _GPS_SLOTS
            vals[lat] = _fmt(s.lat_e7 / 10000000)
            vals[lon] = _fmt(s.lon_e7 / 10000000)
            vals[alt] = _fmt(s.alt_dm / 10)
            vals[spd] = _fmt(s.speed_kmh_x10 / 10)
            if course:
                vals[crs] = _fmt(s.course_x10 / 10)
            vals[sats] = str(s.sats)
            vals[hdop] = _fmt(s.hdop_x10 / 10)
            vals[fqs] = str(fq)
        else:
            vals[_FIXQ] = "0"
        st, val = s.status, s.value
        i = 0
        for v_slot, st_slot, scale in _CH_SLOTS:
            c = st[i]
            if c != _NOT_FITTED:
                if c == _OK or c == _OUT_OF_RANGE:
                    # raw / scale as a float, formatted: integral -> the integer's digits
                    raw = val[i]
                    vals[v_slot] = str(raw // scale) if raw % scale == 0 else str(raw / scale)
                vals[st_slot] = _STATUS_TEXT[c]
            i += 1
        shape = (bool(fq), bool(course), bytes(st))
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan(shape)
        keys = self._keys
        return (f"{self.prefix(device)}{','.join([keys[k] + vals[k] for k in plan])} "
                f"{s.t_s2020 + wire.EPOCH_2020_UNIX_S}")

    def _plan(self, shape) -> tuple[int, ...]:
        """The slots a sample of this shape fills, in line order (field names sorted)."""
        fix, course, st = shape
        present = {_SEQ, _FLAGS}
        if fix:
            present.update(_GPS_SLOTS if course else
                           [k for k in _GPS_SLOTS if k != _SLOT["course_deg"]])
        else:
            present.add(_FIXQ)
        for i, (v_slot, st_slot, _scale) in enumerate(_CH_SLOTS):
            if st[i] != _NOT_FITTED:
                present.add(st_slot)
                if st[i] == _OK or st[i] == _OUT_OF_RANGE:
                    present.add(v_slot)
        plan = tuple(sorted(present))
        if len(self._plans) > 10_000:      # shapes are few; bound it anyway
            self._plans.clear()
        self._plans[shape] = plan
        return plan


def _fmt(v: float) -> str:
    t = str(v)
    return t[:-2] if t.endswith(".0") else t
