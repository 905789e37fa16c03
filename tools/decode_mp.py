# The MicroPython half of `envbox decode` (tools/decode.py spawns it): feeds a raw capture through
# the box's own frame parsers and drivers (firmware/drivers/*) and prints one JSON object per
# frame, sentence or I2C read, then a summary object.
#
#   micropython tools/decode_mp.py PROTOCOL FILE raw|hex [key=value ...]
#
# Run with MICROPYPATH=<tools/mpybuild.py source_root()> (the firmware as envbox.firmware). The
# arguments were checked by tools/decode.py (a protocol of the registry, readable file, valid
# hex); this script trusts them.
#
# UART parts: every byte goes through the part's framer (the family's frame parser the driver
# mixes in: push() -> a verdict per complete frame) and every verdict into the driver's take()
# (ESPHome's parse_data_()), exactly as the driver's poll() does on the box; the statuses are
# the ones the driver's fill() writes into a wire.Sample, with the module taken as long past its
# warm-up: what the box would transmit for that frame. I2C parts: each read is answered to the
# driver's own request/poll cycle. What each protocol adds to a record (its kind of frame, the
# raw fields) is in the DESCRIBE functions below.

import sys
import json
import binascii

from envbox.firmware import wire
from envbox.firmware.drivers import registry
from envbox.firmware.drivers.frames import CHECKSUM, FRAMING, GOOD, OVERLONG

NOW_MS = 1000000        # board clock for UART drivers: started at 0, so every warm-up is over
_S2020 = 1577836800


def civil_from_days(z):
    """(y, m, d) of a day count since 1970-01-01 (H. Hinnant's algorithm)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def iso_utc(t_unix_s):
    day = t_unix_s // 86400
    sod = t_unix_s - day * 86400
    y, m, d = civil_from_days(day)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, sod // 3600, sod // 60 % 60, sod % 60)


def hexs(b):
    return binascii.hexlify(b).decode()


# -- input ----------------------------------------------------------------------------------------

def chunks(path, mode, size=None):
    """(bytes, line number or 0). Raw: blocks of the file (or `size`-byte reads); hex: one line."""
    if mode == "hex":
        n = 0
        with open(path) as f:
            for line in f:
                n += 1
                s = line.strip()
                if not s or s[0] == "#":
                    continue
                for sep in (" ", ":", "\t"):
                    s = s.replace(sep, "")
                yield binascii.unhexlify(s), n
        return
    with open(path, "rb") as f:
        while True:
            b = f.read(size or 4096)
            if not b:
                return
            yield b, 0


class CaptureUART:
    """The driver's UART: the capture is what the module sent, and this script hands it to the
    framer itself, so there is nothing to read; writes (requests) are dropped."""

    def any(self):
        return 0

    def readinto(self, buf, nbytes=None):
        return None

    def write(self, data):
        return len(data)


class Out:
    """Emits records and keeps what a frame's hex needs: the last bytes fed."""

    def __init__(self, quiet=False):
        self.quiet = quiet
        self.records = 0
        self.offset = 0          # bytes fed so far
        self.tail = bytearray(128)

    def feed(self, b):
        self.tail[self.offset % 128] = b
        self.offset += 1

    def frame_hex(self, n):
        t = self.tail
        k = self.offset
        out = bytearray(n)
        for i in range(n):
            out[i] = t[(k - n + i) % 128]
        return hexs(out)

    def emit(self, rec):
        if not self.quiet:
            print(json.dumps(rec))
        self.records += 1


def channel_values(drv, now_ms, rec):
    """fill() the driver into a fresh wire.Sample; add its channels (physical units, names from
    wire.CHANNELS) and the status to rec. Returns the status name."""
    s = wire.Sample(b"decode")
    drv.fill(s, now_ms)
    first = None
    for ch in drv.CHANNELS:
        name, scale = wire.CHANNELS[ch]
        st = s.status[ch]
        if first is None:
            first = st
        elif st != first:
            rec[name + "_status"] = wire.STATUS_NAMES[st]
        if wire.status_has_value(st):
            v = s.value[ch]
            rec[name] = v if scale == 1 else v / scale
        else:
            rec[name] = None
    rec["status"] = wire.STATUS_NAMES[first]
    return rec["status"]


def checksum_error(rec, out, d, hex_too=True):
    rec["error"] = "checksum"
    rec["status"] = "checksum_error"
    if hex_too:
        rec["hex"] = out.frame_hex(d.flen)


# -- what each UART protocol adds to a record: describe(d, v, rec, out) -> the record to print ----

def _pms5003(d, v, rec, out):
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    elif d.flen == 8:
        rec["kind"] = "ack"
        rec["hex"] = out.frame_hex(8)
    else:
        rec["kind"] = "data"
        channel_values(d, NOW_MS, rec)      # fill() uses a reading once: no new request needed
        rec["version"] = d.version
        rec["error_code"] = d.error_code
        rec["all_zero"] = not any(d.words[:12])   # what the module sends while warming up
        rec["hex"] = out.frame_hex(32)
    return rec


def _sds011(d, v, rec, out):
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    elif v == FRAMING:
        rec["error"] = "framing"
        rec["status"] = "no_data"
        rec["hex"] = out.frame_hex(10)
    elif d.fbuf[1] == 0xC5:
        rec["kind"] = "ack"
        rec["device_id"] = d.device_id
        rec["hex"] = out.frame_hex(10)
    else:
        rec["kind"] = "data"
        channel_values(d, NOW_MS, rec)
        # the frame's own 0.1 ug/m3 resolution (the wire carries whole ug/m3)
        rec["pm25_ugm3"] = d.pm25_x10 / 10
        rec["pm10_ugm3"] = d.pm10_x10 / 10
        rec["device_id"] = d.device_id
        rec["hex"] = out.frame_hex(10)
    return rec


def _mhz19b(d, v, rec, out):
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    else:
        rec["hex"] = out.frame_hex(9)
        if d.fbuf[1] != 0x86:
            rec["kind"] = "other"        # reply to another command (ABC, range, calibration)
        else:
            rec["kind"] = "data"
            channel_values(d, NOW_MS, rec)
            rec["temp_c"] = d.temp_c     # undocumented byte, diagnostics only (not on the wire)
            rec["status_byte"] = d.status_byte
    return rec


def _ze03(d, v, rec, out):
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    else:
        rec["hex"] = out.frame_hex(9)
        b1 = d.fbuf[1]
        rec["kind"] = "qa" if b1 == 0x86 else ("ack" if b1 == 0x78 else "active")
        st = channel_values(d, NOW_MS, rec)
        if st == "no_data":              # a frame without a reading (mode-switch ack)
            for ch in d.CHANNELS:
                rec.pop(wire.CHANNELS[ch][0], None)
            rec.pop("status")
        elif st == "sensor_error":
            # (as since the first version: a gas mismatch seen earlier in the capture names
            # every later sensor_error, too)
            rec["error"] = "gas_mismatch" if d.gas_mismatches else "unit_or_decimals"
        else:
            rec["gas"] = d.gas
            rec["gas_code"] = d.gas_code
            rec["conc_raw"] = d.conc_raw
            rec["decimals"] = d.decimals
            rec["unit"] = "ppb" if d.unit == 4 else "ppm"
    return rec


def _ze08(d, v, rec, out):
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    else:
        rec["hex"] = out.frame_hex(9)
        qa = d.fbuf[1] == 0x86
        rec["kind"] = "qa" if qa else "active"
        st = channel_values(d, NOW_MS, rec)
        if st == "sensor_error":
            rec["error"] = "unit_or_decimals"
        elif qa:
            rec["hcho_ugm3"] = d.hcho_ugm3
        else:
            rec["full_range_ppb"] = d.full_range_ppb
    return rec


def _modbus(d, v, rec, out):
    rec["address"] = d.address
    rec["function"] = d.function
    if v == CHECKSUM:
        checksum_error(rec, out, d, False)
        d.fill(wire.Sample(b"x"), NOW_MS)      # closes the driver's LAeq window
    elif d.flen == 5:
        rec["kind"] = "exception"
        rec["exception"] = d.exception_code
        rec["status"] = "sensor_error"
        rec["hex"] = out.frame_hex(5)
        d.fill(wire.Sample(b"x"), NOW_MS)
    else:
        rec["kind"] = "reply"
        rec["raw"] = d.raw
        channel_values(d, NOW_MS, rec)   # LAeq/LAmin/LAmax of a one-reply window = the level
        rec["noise_dba"] = d.level_e4 / 10000
        for k in ("noise_lmin_dba", "noise_lmax_dba"):
            rec.pop(k, None)
        rec["hex"] = out.frame_hex(7)
    return rec


def _nmea(d, v, rec, out):
    if v == CHECKSUM:
        rec["error"] = "checksum"          # bad or missing *hh (a cut-off line too)
        t = "$" + bytes(d.fbuf[:d.flen]).decode()
        rec["text"] = t
        if len(t) < 4 or t[-3] != "*":
            rec["detail"] = "no *hh at the end (cut off or no checksum)"
        return rec
    if v == OVERLONG:
        rec["error"] = "overlong"
        return rec
    line = d.fbuf
    fix = dict(rec)
    rec["talker"] = bytes(line[0:2]).decode()
    rec["type"] = bytes(line[2:5]).decode()
    rec["text"] = "$" + bytes(line[:d.flen]).decode()
    if d.bad_fields != _NMEA[0]:
        _NMEA[0] = d.bad_fields
        rec["error"] = "bad_fields"       # checksum good, a field unparseable: not used
    k = d.last_kind
    if k == 1:
        _rmc(d, rec)
    elif k == 2:
        _gga(d, rec)
    else:
        rec["kind"] = "other"
    out.emit(rec)
    if d.fixes != _NMEA[1]:
        # RMC and GGA of the same second combined: the fix the box puts on the wire
        _NMEA[1] = d.fixes
        t = d.fix_t_s2020 + _S2020
        fix["kind"] = "fix"
        fix["t_unix_s"] = t
        fix["time_utc"] = iso_utc(t)
        fix["fix_quality"] = d.fix_quality
        fix["lat_deg"] = d.lat_e7 / 10000000
        fix["lon_deg"] = (d.lon_e7_hi * 65536 + d.lon_e7_lo) / 10000000
        fix["alt_m"] = d.alt_dm / 10
        fix["speed_kmh"] = d.speed_kmh_x10 / 10
        fix["course_deg"] = None if d.course_x10 == 0xFFFF else d.course_x10 / 10
        fix["sats"] = d.sats
        fix["hdop"] = d.hdop_x10 / 10
        fix["status"] = "fix"
        out.emit(fix)
    return None


_NMEA = [0, 0]      # bad_fields and fixes already reported


def _rmc(d, rec):
    rec["kind"] = "rmc"
    st = d.rmc_status
    rec["rmc_status"] = chr(st) if st else None
    t = (d.rmc_day * 86400 + d.rmc_sod) if d.rmc_day >= 0 else None
    rec["t_unix_s"] = t
    rec["time_utc"] = iso_utc(t) if t is not None else None
    v = d.rmc_valid
    rec["lat_deg"] = d.rmc_lat / 10000000 if v else None
    rec["lon_deg"] = (d.rmc_lon_hi * 65536 + d.rmc_lon_lo) / 10000000 if v else None
    rec["speed_kmh"] = d.rmc_speed / 10 if v else None
    rec["course_deg"] = d.rmc_course / 10 if v and d.rmc_course != 0xFFFF else None
    rec["status"] = "fix" if v else "no_fix"


def _gga(d, rec):
    rec["kind"] = "gga"
    q = d.gga_q
    rec["fix_quality"] = q
    sod = d.gga_sod
    rec["utc_tod_s"] = sod
    # GGA has no date: take it from the last RMC when that RMC is less than a minute away
    # (receivers send RMC and GGA of the same second together), across midnight too
    rec["time_utc"] = None
    if d.rmc_day >= 0 and d.rmc_sod >= 0 and sod >= 0:
        dt = sod - d.rmc_sod
        if dt < -43200:
            dt += 86400
        elif dt > 43200:
            dt -= 86400
        if -60 <= dt <= 60:
            t = d.rmc_day * 86400 + d.rmc_sod + dt
            rec["t_unix_s"] = t
            rec["time_utc"] = iso_utc(t)
    fix = q > 0
    # the driver parses position, satellites and HDOP only for a fix (quality > 0)
    rec["lat_deg"] = d.gga_lat / 10000000 if fix else None
    rec["lon_deg"] = (d.gga_lon_hi * 65536 + d.gga_lon_lo) / 10000000 if fix else None
    rec["alt_m"] = d.gga_alt / 10 if fix else None
    rec["sats"] = d.gga_sats if fix else None
    rec["hdop"] = d.gga_hdop / 10 if fix else None
    rec["status"] = "fix" if fix else "no_fix"


def _frame(d, v, rec, out):
    """Any other UART part of the registry: its channels as its driver fills them."""
    if v == CHECKSUM:
        checksum_error(rec, out, d)
    else:
        rec["kind"] = "frame"
        channel_values(d, NOW_MS, rec)
        rec["hex"] = out.frame_hex(d.flen)
    return rec


# protocol -> (describe, counters added to the summary, a question-and-answer part: asked at the
# start and again after each frame, which forgets the last answers (the driver's `seen`)).
# A UART protocol not named here is decoded by _frame, as a question-and-answer part.
DESCRIBE = {"pms5003": (_pms5003, ("acks",), False),
            "sds011": (_sds011, ("acks", "framing_errors"), True),
            "mhz19b": (_mhz19b, (), True),
            "ze03": (_ze03, ("gas_mismatches",), True),
            "ze08": (_ze08, (), True),
            "modbus": (_modbus, ("exceptions",), False),
            "nmea": (_nmea, ("sentences_ok", "fixes", "overlong", "bad_fields"), False)}


def part_name(protocol, opts):
    """The registry part a protocol's capture is decoded as (a ZE03 by its gas)."""
    if protocol == "ze03":
        return "ze03_" + opts.get("gas", "co")
    for line in registry.PARTS:
        f = line.split()
        if f[4] == protocol:
            return f[0]
    raise ValueError(protocol)


def run_uart(protocol, path, mode, opts, quiet=False):
    describe, extra, ask = DESCRIBE.get(protocol, (_frame, (), True))
    cfg = dict(opts)
    cfg.pop("gas", None)
    if protocol == "nmea":
        cfg["min_year"] = 2000      # decode old captures too (the box refuses dates before 2024)
    d = registry.make(part_name(protocol, opts), CaptureUART(), cfg)
    d.start(0)
    if ask:
        d.request(0)
    out = Out(quiet)
    _NMEA[0] = _NMEA[1] = 0
    for data, line in chunks(path, mode):
        for b in data:
            out.feed(b)
            v = d.push(b)               # the family's frame parser, as in the driver's poll()
            if not v:
                continue
            d.take(v)                   # the part's parse_data_()
            rec = {"ok": v == GOOD, "offset": out.offset}
            if line:
                rec["line"] = line
            rec = describe(d, v, rec, out)
            if rec is not None:
                out.emit(rec)
            if ask:
                d.request(NOW_MS)
    s = {"summary": True, "frames_ok": getattr(d, "frames_ok", 0),
         "checksum_errors": d.checksum_errors,
         "bytes_skipped": d.bytes_skipped, "bytes_total": out.offset, "bytes_pending": d.fpos,
         "records": out.records}
    for k in extra:
        s[k] = getattr(d, k)
    if protocol == "nmea":
        s["frames_ok"] = d.sentences_ok
    elif protocol == "ze03":
        s["gas"] = d.gas
    elif protocol == "modbus":
        s["address"] = d.address
        s["function"] = d.function
    return d, s


def pick(protocol, path, mode, opts, key, choices, score):
    """A first pass per candidate setting (ZE03 gas, Modbus function): keep the one whose
    driver accepted most frames."""
    best = None
    best_score = -1
    for c in choices:
        o = dict(opts)
        o[key] = c
        d, _ = run_uart(protocol, path, mode, o, quiet=True)
        sc = score(d)
        if sc > best_score:
            best, best_score = c, sc
    opts[key] = best


# -- I2C parts: each read answers the driver's own request/poll cycle ---------------------------------

class ReplayI2C:
    """machine.I2C whose reads return the captured bytes. `ready_word`: bytes answered to a
    3-byte read when the capture holds a longer read (SCD4x: the capture has the measurement
    reads, the decoder answers the driver's get_data_ready_status itself)."""

    def __init__(self, ready_word=None):
        self.data = None
        self.ready_word = ready_word

    def writeto(self, addr, buf, stop=True):
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        d = self.data
        if d is not None and len(d) == len(buf):
            self.data = None
            for i in range(len(buf)):
                buf[i] = d[i]
            return
        if d is not None and len(buf) == 3 and self.ready_word is not None:
            for i in range(3):
                buf[i] = self.ready_word[i]
            return
        raise OSError(5)        # nothing captured for this read: the device NACKs


def _sht(d, bus, t, data, rec):
    ok0, bad0 = d.frames_ok, d.checksum_errors
    bus.data = data
    d.request(t)
    d.poll(t + d.conversion_ms)
    if d.checksum_errors != bad0:
        rec["ok"] = False
        rec["error"] = "checksum"
    channel_values(d, t + d.conversion_ms, rec)
    if d.frames_ok != ok0:
        rec["raw_t"] = (data[0] << 8) | data[1]
        rec["raw_rh"] = (data[3] << 8) | data[4]


def _scd4x(d, bus, t, data, rec):
    bad0, nr0 = d.checksum_errors, d.not_ready
    bus.data = data
    d.request(t)              # writes get_data_ready_status
    d.poll(t + 1)             # reads the 3-byte ready word
    if len(data) == 3:
        rec["kind"] = "data_ready"
        if d.checksum_errors != bad0:
            rec["ok"] = False
            rec["error"] = "checksum"
            rec["status"] = "checksum_error"
        else:
            # the driver's own test: ready <=> word & 0x07FF
            rec["ready"] = d.not_ready == nr0
            rec["word"] = (data[0] << 8) | data[1]
        return
    d.poll(t + 2)             # reads the 9-byte measurement
    rec["kind"] = "measurement"
    if d.checksum_errors != bad0:
        rec["ok"] = False
        rec["error"] = "checksum"
    channel_values(d, t + 3, rec)


# protocol -> (transaction, read lengths (the first: a raw file's reads), ready word, driver cfg)
I2C = {"sht4x": (_sht, (6,), None, {}), "sht3x": (_sht, (6,), None, {}),
       "scd4x": (_scd4x, (9, 3), b"\x80\x06\x04", {"temp_rh": True})}  # 0x8006: ready (CRC 0x04)


def run_i2c(protocol, path, mode):
    transaction, lengths, ready, cfg = I2C[protocol]
    bus = ReplayI2C(ready)
    d = registry.make(protocol, bus, cfg)
    if protocol == "scd4x":
        d.start(0)
        d.poll(600)               # past stop_periodic_measurement's 500 ms: running
    out = Out()
    st = {"reads": 0, "length_errors": 0, "bytes_total": 0, "t": 10000}
    raw = b""

    def read(data, line):
        st["reads"] += 1
        st["bytes_total"] += len(data)
        rec = {"ok": True, "read": st["reads"]}
        if line:
            rec["line"] = line
        rec["hex"] = hexs(data)
        if len(data) not in lengths:
            st["length_errors"] += 1
            rec["ok"] = False
            rec["error"] = "length"
            rec["expected_bytes"] = lengths
        else:
            st["t"] += 1000
            transaction(d, bus, st["t"], data, rec)
        out.emit(rec)

    for data, line in chunks(path, mode):
        if mode == "hex":
            read(data, line)
            continue
        # raw mode: the file is the reads back to back, lengths[0] bytes each
        raw += data
        n = lengths[0]
        while len(raw) >= n:
            read(raw[:n], 0)
            raw = raw[n:]
    return {"summary": True, "frames_ok": d.frames_ok, "checksum_errors": d.checksum_errors,
            "bytes_skipped": 0, "bytes_total": st["bytes_total"], "bytes_pending": len(raw),
            "reads": st["reads"], "length_errors": st["length_errors"], "records": out.records}


# -- main -----------------------------------------------------------------------------------------

def main(argv):
    protocol, path, mode = argv[0], argv[1], argv[2]
    opts = {}
    for a in argv[3:]:
        k, _, v = a.partition("=")
        opts[k] = v if k == "gas" else int(v)
    auto = []
    if protocol == "ze03" and "gas" not in opts:
        # a Q&A reply for another gas counts as a frame and a mismatch; an active frame of
        # another gas is skipped
        pick(protocol, path, mode, opts, "gas", ("o3", "no2", "so2", "co"),
             lambda d: d.frames_ok - 2 * d.gas_mismatches)
        auto.append("gas")
    if protocol == "modbus" and "function" not in opts:
        pick(protocol, path, mode, opts, "function", (3, 4),
             lambda d: d.frames_ok + d.checksum_errors)
        auto.append("function")
    if protocol in I2C:
        s = run_i2c(protocol, path, mode)
    else:
        _, s = run_uart(protocol, path, mode, opts)
    s["sensor"] = protocol
    if auto:
        s["auto"] = auto
    print(json.dumps(s))


main(sys.argv[1:])
