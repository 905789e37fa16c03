# Host-side decoding of the wire format (firmware/wire.py defines the format; this module reads it
# back), and the allocating helpers. Split from wire.py because the box only encodes: keeping
# them out of the box's import path saves their bytecode in its heap. Use them through wire
# (wire.decode, wire.decode_many, wire.encode, ...: wire loads this module on first use).

import struct

from .channels import CHANNELS, STATUS_NAMES
from .wire import (KIND_ACK, MAX_ACK_RANGES, BH_FIX, BH_FLAGS, BH_MASK, BH_SEQ, BH_STATUS, BH_TIME,
                   COURSE_UNKNOWN, EPOCH_2020_UNIX_S, KIND_BATCH, KIND_SAMPLE, MAX_DEVICE_ID,
                   N_CHANNELS, SCHEMA_VERSION, STATUS_NOT_FITTED, STATUS_OK,
                   STATUS_OUT_OF_RANGE, MAX_SAMPLE_BYTES, WireError, encode_into)


def status_has_value(status):
    return status == STATUS_OK or status == STATUS_OUT_OF_RANGE


def encode(s):
    """Encode to a new bytes object (host side and tests; the firmware uses encode_into)."""
    buf = bytearray(MAX_SAMPLE_BYTES)
    n = encode_into(buf, s)
    return bytes(buf[:n])


def _get_varint(data, pos, end):
    u = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 35:
            raise WireError("varint too long")
    v = (u >> 1) if not u & 1 else -((u + 1) >> 1)
    return v, pos


def decode(data):
    """Decode one payload into a dict (allocates; host side and tests).

    Raises WireError with a reason for anything that is not a well-formed v1 sample.
    """
    end = len(data)
    if end < 2:
        raise WireError("payload too short")
    if data[0] != KIND_SAMPLE:
        raise WireError("unknown payload kind 0x%02x" % data[0])
    n = data[1]
    if n < 1 or n > MAX_DEVICE_ID:
        raise WireError("bad device id length %d" % n)
    p = 2 + n
    if end < p + 10:
        raise WireError("truncated header")
    dev = bytes(data[2:p])
    for b in dev:
        if b < 0x21 or b > 0x7E or b in b"/+#":
            raise WireError("device id is not printable ASCII without / + #")
    seq, t, flags, fixq = struct.unpack_from(">IIBB", data, p)
    p += 10
    gps = None
    if fixq:
        if end < p + 16:
            raise WireError("truncated position")
        sats, hdop, lat, lon, alt, spd, crs = struct.unpack_from(">BBiihHH", data, p)
        p += 16
        gps = {
            "fix_quality": fixq,
            "sats": sats,
            "hdop": hdop / 10,
            "lat_e7": lat,
            "lon_e7": lon,
            "lat_deg": lat / 10000000,
            "lon_deg": lon / 10000000,
            "alt_m": alt / 10,
            "speed_kmh": spd / 10,
            "course_deg": None if crs == COURSE_UNKNOWN else crs / 10,
        }
    if end < p + 4:
        raise WireError("truncated channel mask")
    mask = struct.unpack_from(">I", data, p)[0]
    p += 4
    if mask >> N_CHANNELS:
        raise WireError("unknown channel bits in mask 0x%08x" % mask)
    channels = {}
    for i in range(N_CHANNELS):
        name, scale = CHANNELS[i]
        if not mask & (1 << i):
            continue
        if p >= end:
            raise WireError("truncated channel %s" % name)
        st = data[p]
        p += 1
        if st >= len(STATUS_NAMES) or st == STATUS_NOT_FITTED:
            raise WireError("bad status %d for %s" % (st, name))
        if st == STATUS_OK or st == STATUS_OUT_OF_RANGE:
            raw, p = _get_varint(data, p, end)
            channels[name] = {"status": STATUS_NAMES[st], "raw": raw, "value": raw / scale}
        else:
            channels[name] = {"status": STATUS_NAMES[st], "raw": None, "value": None}
    if p != end:
        raise WireError("%d trailing bytes" % (end - p))
    return {
        "v": SCHEMA_VERSION,
        "device": dev.decode(),
        "seq": seq,
        "t_utc_s": t + EPOCH_2020_UNIX_S,
        "flags": flags,
        "gps": gps,
        "channels": channels,
    }


def _get_u8(data, p, end, what):
    if p >= end:
        raise WireError("truncated " + what)
    return data[p]


# what encode() raises for a field out of its range (CPython: struct.error)
_PACK_ERRORS = (ValueError, OverflowError, getattr(struct, "error", ValueError))


def _decode_batch(data, _raw=False):
    end = len(data)
    n = data[1] if end > 1 else 0
    if n < 1 or n > MAX_DEVICE_ID:
        raise WireError("bad device id length %d" % n)
    p = 2 + n
    if end < p + 10:
        raise WireError("truncated batch header")
    dev = bytes(data[2:p])
    seq0, t0, period, count = struct.unpack_from(">IIBB", data, p)
    p += 10
    if count == 0:
        raise WireError("empty batch")
    head = bytes((KIND_SAMPLE, n)) + dev     # each single's first bytes
    seq = seq0 - 1
    t = t0 - period
    flags = fixq = sats = hdop = 0
    lat = lon = dlat = dlon = alt = spd = crs = 0
    mask = 0
    st = bytearray(N_CHANNELS)
    for i in range(N_CHANNELS):
        st[i] = STATUS_NOT_FITTED
    val = [0] * N_CHANNELS
    out = []
    fitted = ()             # the fitted channels' indices and their mask, as the single's bytes
    mask_bytes = b"\0\0\0\0"
    for _ in range(count):
        bh = _get_u8(data, p, end, "batch sample")
        p += 1
        if bh & ~0x3F:
            raise WireError("bad batch head 0x%02x" % bh)
        ds = 1
        if bh & BH_SEQ:
            ds, p = _get_varint(data, p, end)
            ds += 1
        seq += ds
        dt = period
        if bh & BH_TIME:
            dt, p = _get_varint(data, p, end)
            dt += period
        t += dt
        if bh & BH_FLAGS:
            flags = _get_u8(data, p, end, "flags")
            p += 1
        if bh & BH_FIX:
            if end < p + 3:
                raise WireError("truncated batch fix")
            fixq, sats, hdop = data[p], data[p + 1], data[p + 2]
            p += 3
        if bh & BH_MASK:
            if end < p + 4:
                raise WireError("truncated batch mask")
            mask = struct.unpack_from(">I", data, p)[0]
            p += 4
            if mask >> N_CHANNELS:
                raise WireError("unknown channel bits in mask 0x%08x" % mask)
        if bh & BH_STATUS:
            for i in range(N_CHANNELS):
                if mask & (1 << i):
                    c = _get_u8(data, p, end, "batch status")
                    p += 1
                    if c >= len(STATUS_NAMES) or c == STATUS_NOT_FITTED:
                        raise WireError("bad status %d in batch" % c)
                    st[i] = c
                else:
                    st[i] = STATUS_NOT_FITTED
            fitted = [i for i in range(N_CHANNELS) if st[i] != STATUS_NOT_FITTED]
            mask_bytes = struct.pack(">I", mask)
        else:
            for i in range(N_CHANNELS):
                if bool(mask & (1 << i)) != (st[i] != STATUS_NOT_FITTED):
                    raise WireError("batch mask changed without statuses")
        if fixq:
            v, p = _get_varint(data, p, end)
            dlat += v
            v, p = _get_varint(data, p, end)
            dlon += v
            lat += dlat
            lon += dlon
            v, p = _get_varint(data, p, end)
            alt += v
            v, p = _get_varint(data, p, end)
            spd += v
            v, p = _get_varint(data, p, end)
            crs += v
        # the single, as wire.encode_into lays it out (tests/test_wire.py holds them to it)
        try:
            one = bytearray(head)
            one += struct.pack(">IIBB", seq, t, flags, fixq)
            if fixq:
                # longitude as the encoder writes it: its two 16-bit halves, modulo 2^32
                one += struct.pack(">BBiIhHH", sats, hdop, lat, lon & 0xFFFFFFFF, alt, spd, crs)
        except _PACK_ERRORS as e:
            raise WireError("batch sample out of range: %s" % e)
        one += mask_bytes
        for i in fitted:
            c = st[i]
            one.append(c)
            if c == STATUS_OK or c == STATUS_OUT_OF_RANGE:
                # deltas of one or two bytes read inline (most of them); longer ones below
                u = data[p] if p < end else 0x80
                if u < 0x80:
                    p += 1
                else:
                    b = data[p + 1] if p + 1 < end else 0x80
                    if b < 0x80:
                        u = (u & 0x7F) | (b << 7)
                        p += 2
                    else:
                        u = -1
                if u >= 0:
                    v = val[i] + ((u >> 1) if not u & 1 else -((u + 1) >> 1))
                else:
                    v, p = _get_varint(data, p, end)
                    v += val[i]
                val[i] = v
                # zig-zag, then _put_uvarint inlined (the call costs 3 us of this batch's ~10 us
                # per sample)
                u = (v << 1) if v >= 0 else ((-v << 1) - 1)
                while u >= 0x80:
                    one.append((u & 0x7F) | 0x80)
                    u >>= 7
                one.append(u)
        one = bytes(one)
        out.append(decode(one) if not _raw else one)
    if p != end:
        raise WireError("%d trailing bytes" % (end - p))
    return out


def decode_many(data):
    """Decode a payload of either kind into a list of sample dicts (each as decode() returns).
    Raises WireError for anything malformed; a batch is accepted whole or not at all."""
    if len(data) >= 1 and data[0] == KIND_BATCH:
        return _decode_batch(data)
    return [decode(data)]


def naive_json(d):
    """The baseline a first prototype would send: JSON with full key names (for benchmarks)."""
    import json
    obj = {"schema_version": d["v"], "device_id": d["device"], "sequence": d["seq"],
           "timestamp_utc": d["t_utc_s"]}
    g = d["gps"] or {}
    obj["gps"] = {"fix_quality": g.get("fix_quality", 0), "satellites": g.get("sats"),
                  "hdop": g.get("hdop"), "latitude": g.get("lat_deg"),
                  "longitude": g.get("lon_deg"), "altitude_m": g.get("alt_m"),
                  "speed_kmh": g.get("speed_kmh"), "course_deg": g.get("course_deg")}
    obj["channels"] = {k: {"value": c["value"], "status": c["status"]}
                       for k, c in d["channels"].items()}
    return json.dumps(obj)


def singles(data):
    """The KIND_SAMPLE payloads a batch stands for (the bytes the box would have sent one by one,
    so a consumer that stores payloads per sample can keep doing so). Anything that is not a
    well-formed batch comes back unchanged as [data]: the caller's decode() then accepts it or
    rejects it with its reason. Never raises."""
    data = bytes(data)
    if len(data) >= 1 and data[0] == KIND_BATCH:
        try:
            return _decode_batch(data, True)
        except WireError:
            pass
    return [data]


def _put_uvarint(out, u):
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def encode_ack(ranges):
    """A KIND_ACK payload for the seq ranges [(lo, hi), ...] (hi excluded): the gateway's side
    (firmware/wire.py describes the layout). Ranges are sorted and merged here; at most
    MAX_ACK_RANGES go out, the newest ones (the box keeps the others until they are acknowledged
    again, so leaving old ones out only delays their release)."""
    rs = sorted((int(a), int(b)) for a, b in ranges if b > a)
    merged = []
    for a, b in rs:
        if a < 0 or b > 0x3FFFFFFF:
            raise WireError("ack range %d..%d outside 0..2^30" % (a, b))
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1][1] = b
        else:
            merged.append([a, b])
    merged = merged[-MAX_ACK_RANGES:]
    out = bytearray((KIND_ACK, len(merged)))
    prev = 0
    for a, b in merged:
        _put_uvarint(out, a - prev)
        _put_uvarint(out, b - a - 1)
        prev = b
    return bytes(out)


def decode_ack(data):
    """[(lo, hi), ...] of a KIND_ACK payload (hi excluded); WireError if malformed."""
    from .wire import decode_ack_into  # noqa: the box's parser, the one under test
    lo = [0] * MAX_ACK_RANGES
    hi = [0] * MAX_ACK_RANGES
    n = decode_ack_into(data, len(data), lo, hi)
    if n < 0:
        raise WireError("malformed acknowledgement")
    return [(lo[k], hi[k]) for k in range(n)]
