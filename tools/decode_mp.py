# The MicroPython half of `envbox decode` (tools/decode.py spawns it): feeds a raw capture through
# the box's own drivers (firmware/drivers/*) and prints one JSON object per frame, sentence or
# I2C read, then a summary object.
#
#   micropython tools/decode_mp.py SENSOR FILE raw|hex [key=value ...]
#
# Run with MICROPYPATH=<repo root>. The arguments were checked by tools/decode.py (known sensor,
# readable file, valid hex); this script trusts them.
#
# Why byte by byte: a driver keeps only its last frame (attributes such as PMS5003.words,
# GNSS.rmc_*); handing it one byte per poll() means a counter moves by at most one frame per
# step, so every frame is reported, including several frames that arrive in one UART read.
# Statuses are the ones the driver itself writes into a wire.Sample (fill()), with the module
# taken as long past its warm-up: what the box would transmit for that frame.

import sys
import json
import binascii

from firmware import wire

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


def emit(rec):
    print(json.dumps(rec))


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
    """machine.UART's read API over the capture, one byte per poll(); writes are dropped (the
    capture is what the module sent, nothing answers the driver's requests)."""

    def __init__(self):
        self.byte = -1
        self.written = 0

    def any(self):
        return 1 if self.byte >= 0 else 0

    def readinto(self, buf, nbytes=None):
        if self.byte < 0:
            return None
        buf[0] = self.byte
        self.byte = -1
        return 1

    def write(self, data):
        self.written += len(data)
        return len(data)


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


# -- UART sensors ---------------------------------------------------------------------------------

class UARTDecoder:
    """Drives one UART driver over a byte stream. Subclasses name the counters to watch (in the
    order their events are reported) and turn each counter step into a record."""

    COUNTERS = ("checksum_errors", "frames_ok")
    SUMMARY = ()
    PENDING = "_p"          # the driver's count of bytes held in its frame buffer

    def __init__(self, drv, uart):
        self.d = drv
        self.uart = uart
        self.offset = 0     # bytes fed so far
        self.line = 0
        self.tail = bytearray(128)   # the last bytes fed, for the frame's hex
        self.moved = []              # counters that moved on the current byte
        self.records = 0

    def frame_hex(self, n):
        t = self.tail
        k = self.offset
        out = bytearray(n)
        for i in range(n):
            out[i] = t[(k - n + i) % 128]
        return hexs(out)

    def feed(self, data, line):
        d = self.d
        u = self.uart
        names = self.COUNTERS
        snap = [getattr(d, c) for c in names]
        moved = self.moved
        for b in data:
            self.tail[self.offset % 128] = b
            self.offset += 1
            self.line = line
            u.byte = b
            d.poll(NOW_MS)
            del moved[:]
            for i in range(len(names)):
                if getattr(d, names[i]) != snap[i]:
                    moved.append(names[i])
            if not moved:
                continue
            for i in range(len(names)):
                v = getattr(d, names[i])
                while snap[i] < v:
                    snap[i] += 1
                    rec = {"ok": True, "offset": self.offset}
                    if line:
                        rec["line"] = line
                    r = self.event(names[i], rec)
                    if r is not None:
                        emit(r)
                        self.records += 1
            # event handlers call fill()/request(), which may move counters (timeouts)
            for i in range(len(names)):
                snap[i] = getattr(d, names[i])

    def event(self, counter, rec):
        raise NotImplementedError

    def checksum(self, rec, n):
        rec["ok"] = False
        rec["error"] = "checksum"
        rec["status"] = "checksum_error"
        rec["hex"] = self.frame_hex(n)
        self.rearm()
        return rec

    def rearm(self):
        # a new request: clears the driver's per-request flags (fresh, bad, fault)
        self.d.request(NOW_MS)

    def summary(self):
        d = self.d
        s = {"summary": True, "frames_ok": d.frames_ok, "checksum_errors": d.checksum_errors,
             "bytes_skipped": d.bytes_skipped, "bytes_total": self.offset,
             "bytes_pending": getattr(d, self.PENDING, 0), "records": self.records}
        for k in self.SUMMARY:
            s[k] = getattr(d, k)
        return s


class PMSDecoder(UARTDecoder):
    COUNTERS = ("checksum_errors", "frames_ok", "acks")
    SUMMARY = ("acks",)
    PENDING = "_n"

    def __init__(self, uart, opts):
        from firmware.drivers.pms5003 import PMS5003
        d = PMS5003(uart, {})
        d.start(0)
        UARTDecoder.__init__(self, d, uart)

    def rearm(self):
        pass            # PMS5003.request() drops buffered bytes; fill() clears the flags itself

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            # the driver drops the bad frame's header and resyncs; report where it happened
            rec["ok"] = False
            rec["error"] = "checksum"
            rec["status"] = "checksum_error"
            d.fill(wire.Sample(b"x"), NOW_MS)      # clears the bad flag for the next frame
            # the bad frame ends here; its length field says which kind it was
            for n in (32, 8):
                h = self.frame_hex(n)
                if h[:8] == ("424d001c" if n == 32 else "424d0004"):
                    rec["hex"] = h
            return rec
        if c == "acks":
            rec["kind"] = "ack"
            rec["hex"] = self.frame_hex(8)
            return rec
        rec["kind"] = "data"
        channel_values(d, NOW_MS, rec)
        rec["version"] = d.version
        rec["error_code"] = d.error_code
        rec["all_zero"] = not any(d.words[:12])   # what the module sends while warming up
        rec["hex"] = self.frame_hex(32)
        return rec


class SDSDecoder(UARTDecoder):
    COUNTERS = ("checksum_errors", "framing_errors", "acks", "frames_ok")
    SUMMARY = ("acks", "framing_errors")

    def __init__(self, uart, opts):
        from firmware.drivers.sds011 import SDS011
        d = SDS011(uart, {})
        d.start(0)
        UARTDecoder.__init__(self, d, uart)

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            return self.checksum(rec, 10)
        if c == "framing_errors":
            rec["ok"] = False
            rec["error"] = "framing"
            rec["status"] = "no_data"
            rec["hex"] = self.frame_hex(10)
            return rec
        if c == "acks":
            rec["kind"] = "ack"
            rec["device_id"] = d.device_id
            rec["hex"] = self.frame_hex(10)
            return rec
        if "acks" in self.moved:
            return None                  # frames_ok counts the ack reported above
        rec["kind"] = "data"
        channel_values(d, NOW_MS, rec)
        # the frame's own 0.1 ug/m3 resolution (the wire carries whole ug/m3)
        rec["pm25_ugm3"] = d.pm25_x10 / 10
        rec["pm10_ugm3"] = d.pm10_x10 / 10
        rec["device_id"] = d.device_id
        rec["hex"] = self.frame_hex(10)
        self.rearm()
        return rec


class MHZDecoder(UARTDecoder):
    def __init__(self, uart, opts):
        from firmware.drivers.mhz19b import MHZ19B
        d = MHZ19B(uart, {})
        d.start(0)
        d.request(0)
        UARTDecoder.__init__(self, d, uart)

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            return self.checksum(rec, 9)
        h = self.frame_hex(9)
        rec["hex"] = h
        if h[2:4] != "86":
            rec["kind"] = "other"        # reply to another command (ABC, range, calibration)
            self.rearm()
            return rec
        rec["kind"] = "data"
        channel_values(d, NOW_MS, rec)
        rec["temp_c"] = d.temp_c         # undocumented byte, diagnostics only (not on the wire)
        rec["status_byte"] = d.status_byte
        self.rearm()
        return rec


class ZE03Decoder(UARTDecoder):
    COUNTERS = ("checksum_errors", "frames_ok")
    SUMMARY = ("gas_mismatches",)

    def __init__(self, uart, opts):
        from firmware.drivers.ze03 import ZE03
        self.gas = opts.get("gas", "co")
        d = ZE03(uart, {"gas": self.gas})
        d.start(0)
        d.request(0)
        UARTDecoder.__init__(self, d, uart)

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            return self.checksum(rec, 9)
        h = self.frame_hex(9)
        rec["hex"] = h
        b1 = h[2:4]
        rec["kind"] = "qa" if b1 == "86" else ("ack" if b1 == "78" else "active")
        before = d.gas_mismatches
        st = channel_values(d, NOW_MS, rec)
        if st == "no_data":              # a frame without a reading (mode-switch ack)
            for ch in d.CHANNELS:
                rec.pop(wire.CHANNELS[ch][0], None)
            rec.pop("status")
        elif st == "sensor_error":
            rec["error"] = "gas_mismatch" if before else "unit_or_decimals"
        else:
            rec["gas"] = d.gas
            rec["gas_code"] = d.gas_code
            rec["conc_raw"] = d.conc_raw
            rec["decimals"] = d.decimals
            rec["unit"] = "ppb" if d.unit == 4 else "ppm"
        self.rearm()
        return rec

    def summary(self):
        s = UARTDecoder.summary(self)
        s["gas"] = self.gas
        return s


class ZE08Decoder(UARTDecoder):
    def __init__(self, uart, opts):
        from firmware.drivers.ze08 import ZE08
        d = ZE08(uart, {})
        d.start(0)
        d.request(0)
        UARTDecoder.__init__(self, d, uart)

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            return self.checksum(rec, 9)
        h = self.frame_hex(9)
        rec["hex"] = h
        qa = h[2:4] == "86"
        rec["kind"] = "qa" if qa else "active"
        st = channel_values(d, NOW_MS, rec)
        if st == "sensor_error":
            rec["error"] = "unit_or_decimals"
        elif qa:
            rec["hcho_ugm3"] = d.hcho_ugm3
        else:
            rec["full_range_ppb"] = d.full_range_ppb
        self.rearm()
        return rec


class ModbusDecoder(UARTDecoder):
    COUNTERS = ("checksum_errors", "exceptions", "frames_ok")
    SUMMARY = ("exceptions",)

    def __init__(self, uart, opts):
        from firmware.drivers.modbus_noise import ModbusNoise
        self.address = opts.get("address", 1)
        self.function = opts.get("function", 3)
        self.scale_div = opts.get("scale_div", 10)
        d = ModbusNoise(uart, {"address": self.address, "function": self.function,
                               "scale_div": self.scale_div})
        d.start(0)
        UARTDecoder.__init__(self, d, uart)

    def rearm(self):
        # fill() closes the driver's LAeq window: each reply is then its own window
        self.d.fill(wire.Sample(b"x"), NOW_MS)

    def event(self, c, rec):
        d = self.d
        rec["address"] = self.address
        rec["function"] = self.function
        if c == "checksum_errors":
            rec["ok"] = False
            rec["error"] = "checksum"
            rec["status"] = "checksum_error"
            self.rearm()
            return rec
        if c == "exceptions":
            rec["kind"] = "exception"
            rec["exception"] = d.exception_code
            rec["status"] = "sensor_error"
            rec["hex"] = self.frame_hex(5)
            self.rearm()
            return rec
        if "exceptions" in self.moved:
            return None                  # frames_ok counts the exception reported above
        rec["kind"] = "reply"
        rec["raw"] = d.raw
        channel_values(d, NOW_MS, rec)   # LAeq/LAmin/LAmax of a one-reply window = the level
        rec["noise_dba"] = d.level_e4 / 10000
        for k in ("noise_lmin_dba", "noise_lmax_dba"):
            rec.pop(k, None)
        rec["hex"] = self.frame_hex(7)
        return rec

    def summary(self):
        s = UARTDecoder.summary(self)
        s["address"] = self.address
        s["function"] = self.function
        return s


class NMEADecoder(UARTDecoder):
    COUNTERS = ("checksum_errors", "overlong", "sentences_ok", "fixes")
    SUMMARY = ("sentences_ok", "fixes", "overlong", "bad_fields")
    PENDING = "_n"

    def __init__(self, uart, opts):
        from firmware.drivers.nmea import GNSS
        # min_year 2000: decode old captures too (the box itself refuses dates before 2024)
        d = GNSS(uart, {"min_year": 2000})
        d.start(0)
        UARTDecoder.__init__(self, d, uart)
        self.frames_ok = 0

    def text(self):
        d = self.d
        return "$" + bytes(d._line[:d._n]).decode()

    def event(self, c, rec):
        d = self.d
        if c == "checksum_errors":
            rec["ok"] = False
            rec["error"] = "checksum"          # bad or missing *hh (a cut-off line too)
            t = self.text()
            rec["text"] = t
            if len(t) < 4 or t[-3] != "*":
                rec["detail"] = "no *hh at the end (cut off or no checksum)"
            return rec
        if c == "overlong":
            rec["ok"] = False
            rec["error"] = "overlong"
            return rec
        if c == "fixes":
            # RMC and GGA of the same second combined: the fix the box puts on the wire
            t = d.fix_t_s2020 + _S2020
            rec["kind"] = "fix"
            rec["t_unix_s"] = t
            rec["time_utc"] = iso_utc(t)
            rec["fix_quality"] = d.fix_quality
            rec["lat_deg"] = d.lat_e7 / 10000000
            rec["lon_deg"] = d.lon_e7 / 10000000
            rec["alt_m"] = d.alt_dm / 10
            rec["speed_kmh"] = d.speed_kmh_x10 / 10
            rec["course_deg"] = None if d.course_x10 == 0xFFFF else d.course_x10 / 10
            rec["sats"] = d.sats
            rec["hdop"] = d.hdop_x10 / 10
            rec["status"] = "fix"
            return rec
        line = d._line
        rec["talker"] = bytes(line[0:2]).decode()
        rec["type"] = bytes(line[2:5]).decode()
        rec["text"] = self.text()
        if d.bad_fields != self._bad:
            self._bad = d.bad_fields
            rec["error"] = "bad_fields"     # checksum good, a field unparseable: not used
        k = d.last_kind
        if k == 1:
            self.rmc(rec)
        elif k == 2:
            self.gga(rec)
        else:
            rec["kind"] = "other"
        return rec

    def rmc(self, rec):
        d = self.d
        rec["kind"] = "rmc"
        st = d.rmc_status
        rec["rmc_status"] = chr(st) if st else None
        t = (d.rmc_day * 86400 + d.rmc_sod) if d.rmc_day >= 0 else None
        rec["t_unix_s"] = t
        rec["time_utc"] = iso_utc(t) if t is not None else None
        v = d.rmc_valid
        rec["lat_deg"] = d.rmc_lat / 10000000 if v else None
        rec["lon_deg"] = d.rmc_lon / 10000000 if v else None
        rec["speed_kmh"] = d.rmc_speed / 10 if v else None
        rec["course_deg"] = d.rmc_course / 10 if v and d.rmc_course != 0xFFFF else None
        rec["status"] = "fix" if v else "no_fix"

    def gga(self, rec):
        d = self.d
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
        rec["lon_deg"] = d.gga_lon / 10000000 if fix else None
        rec["alt_m"] = d.gga_alt / 10 if fix else None
        rec["sats"] = d.gga_sats if fix else None
        rec["hdop"] = d.gga_hdop / 10 if fix else None
        rec["status"] = "fix" if fix else "no_fix"

    _bad = 0

    def summary(self):
        d = self.d
        return {"summary": True, "frames_ok": d.sentences_ok, "checksum_errors": d.checksum_errors,
                "bytes_skipped": d.bytes_skipped, "bytes_total": self.offset,
                "bytes_pending": d._n if d._in else 0, "records": self.records,
                "sentences_ok": d.sentences_ok, "fixes": d.fixes, "overlong": d.overlong,
                "bad_fields": d.bad_fields}


# -- I2C sensors ----------------------------------------------------------------------------------

class ReplayI2C:
    """machine.I2C whose reads return the captured bytes. `ready_word`: bytes answered to a
    3-byte read when the capture holds a longer read (SCD4x: the capture has the measurement
    reads, the decoder answers the driver's get_data_ready_status itself)."""

    def __init__(self, ready_word=None):
        self.data = None
        self.ready_word = ready_word
        self.writes = 0

    def writeto(self, addr, buf, stop=True):
        self.writes += 1
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


class I2CDecoder:
    READ_LEN = 6

    def __init__(self, opts):
        self.bus = ReplayI2C(self.READY)
        self.d = self.make(self.bus)
        self.reads = 0
        self.length_errors = 0
        self.bytes_total = 0
        self.records = 0
        self.t = 10000

    READY = None

    def feed_raw(self, data):
        # raw mode: the file is the reads back to back, READ_LEN bytes each
        self._raw = getattr(self, "_raw", b"") + data
        n = self.READ_LEN
        while len(self._raw) >= n:
            r = self._raw[:n]
            self._raw = self._raw[n:]
            self.feed(r, 0)

    def feed(self, data, line):
        self.reads += 1
        self.bytes_total += len(data)
        rec = {"ok": True, "read": self.reads}
        if line:
            rec["line"] = line
        rec["hex"] = hexs(data)
        if len(data) not in self.LENGTHS:
            self.length_errors += 1
            rec["ok"] = False
            rec["error"] = "length"
            rec["expected_bytes"] = self.LENGTHS
        else:
            self.t += 1000
            self.transaction(data, rec)
        emit(rec)
        self.records += 1

    def summary(self):
        d = self.d
        return {"summary": True, "frames_ok": d.frames_ok, "checksum_errors": d.checksum_errors,
                "bytes_skipped": 0, "bytes_total": self.bytes_total,
                "bytes_pending": len(getattr(self, "_raw", b"")), "reads": self.reads,
                "length_errors": self.length_errors, "records": self.records}


class SHTDecoder(I2CDecoder):
    LENGTHS = (6,)

    def __init__(self, opts, cls):
        self.cls = cls
        I2CDecoder.__init__(self, opts)

    def make(self, bus):
        return self.cls(bus, {})

    def transaction(self, data, rec):
        d = self.d
        ok0, bad0 = d.frames_ok, d.checksum_errors
        self.bus.data = data
        d.request(self.t)
        d.poll(self.t + d.conversion_ms)
        if d.checksum_errors != bad0:
            rec["ok"] = False
            rec["error"] = "checksum"
        channel_values(d, self.t + d.conversion_ms, rec)
        if d.frames_ok != ok0:
            rec["raw_t"] = (data[0] << 8) | data[1]
            rec["raw_rh"] = (data[3] << 8) | data[4]


class SCD4xDecoder(I2CDecoder):
    READ_LEN = 9
    LENGTHS = (9, 3)
    READY = b"\x80\x06\x04"       # get_data_ready_status "ready" (0x8006, CRC 0x04)

    def make(self, bus):
        from firmware.drivers.scd4x import SCD4x
        d = SCD4x(bus, {"temp_rh": True})
        d.start(0)
        d.poll(600)               # past stop_periodic_measurement's 500 ms: running
        return d

    def transaction(self, data, rec):
        d = self.d
        t = self.t
        ok0, bad0, nr0 = d.frames_ok, d.checksum_errors, d.not_ready
        self.bus.data = data
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


# -- main -----------------------------------------------------------------------------------------

UART_DECODERS = {"pms5003": PMSDecoder, "sds011": SDSDecoder, "mhz19b": MHZDecoder,
                 "ze03": ZE03Decoder, "ze08": ZE08Decoder, "modbus": ModbusDecoder,
                 "nmea": NMEADecoder}


def run_uart(sensor, path, mode, opts, quiet=False):
    dec = UART_DECODERS[sensor](CaptureUART(), opts)
    if quiet:
        dec.event = lambda c, rec: None
    for data, line in chunks(path, mode):
        dec.feed(data, line)
    return dec


def pick(sensor, path, mode, opts, key, choices, score):
    """A first pass per candidate setting (ZE03 gas, Modbus function): keep the one whose
    driver accepted most frames."""
    best = None
    best_score = -1
    for c in choices:
        o = dict(opts)
        o[key] = c
        dec = run_uart(sensor, path, mode, o, quiet=True)
        sc = score(dec.d)
        if sc > best_score:
            best, best_score = c, sc
    opts[key] = best


def main(argv):
    sensor, path, mode = argv[0], argv[1], argv[2]
    opts = {}
    for a in argv[3:]:
        k, _, v = a.partition("=")
        opts[k] = v if k == "gas" else int(v)
    auto = []
    if sensor == "ze03" and "gas" not in opts:
        # a Q&A reply for another gas counts as a frame and a mismatch; an active frame of
        # another gas is skipped
        pick(sensor, path, mode, opts, "gas", ("o3", "no2", "so2", "co"),
             lambda d: d.frames_ok - 2 * d.gas_mismatches)
        auto.append("gas")
    if sensor == "modbus" and "function" not in opts:
        pick(sensor, path, mode, opts, "function", (3, 4),
             lambda d: d.frames_ok + d.checksum_errors)
        auto.append("function")
    if sensor in UART_DECODERS:
        dec = run_uart(sensor, path, mode, opts)
    else:
        if sensor == "scd4x":
            dec = SCD4xDecoder(opts)
        elif sensor == "sht4x":
            from firmware.drivers.sht4x import SHT4x
            dec = SHTDecoder(opts, SHT4x)
        else:
            from firmware.drivers.sht3x import SHT3x
            dec = SHTDecoder(opts, SHT3x)
        for data, line in chunks(path, mode):
            if mode == "hex":
                dec.feed(data, line)
            else:
                dec.feed_raw(data)
    s = dec.summary()
    s["sensor"] = sensor
    if auto:
        s["auto"] = auto
    emit(s)


main(sys.argv[1:])
