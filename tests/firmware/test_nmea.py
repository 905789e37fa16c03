# GNSS NMEA driver under MicroPython, against tests/vectors/nmea.json (shared with the simulator).
import micropython
import mptest
from envbox.firmware import wire
from envbox.firmware.drivers.nmea import GNSS, days_from_civil

V = mptest.vectors("nmea")["vectors"]
EPOCH = wire.EPOCH_2020_UNIX_S


def _line(v):
    return mptest.unhex(v["hex"])


def feed(g, data):
    """What the driver's poll() does with the bytes a UART holds: the sentence parser, then
    what a complete sentence means."""
    for c in data:
        v = g.push(c)
        if v:
            g.take(v)


def test_days_from_civil():
    mptest.eq(days_from_civil(1970, 1, 1), 0)
    mptest.eq(days_from_civil(2020, 1, 1), 18262)
    mptest.eq(days_from_civil(2024, 2, 29), 19782)
    mptest.eq(days_from_civil(2000, 3, 1), 11017)


def test_good_sentences_decode_like_the_vectors():
    n = 0
    for v in V:
        if not v["ok"]:
            continue
        d = v["decoded"]
        g = GNSS(None, {"min_year": 2000})
        feed(g, _line(v))
        mptest.eq(g.sentences_ok, 1, v["name"])
        mptest.eq(g.checksum_errors, 0, v["name"])
        if d["type"] == "RMC":
            mptest.eq(g.last_kind, 1)
            mptest.eq(chr(g.rmc_status), d["status"], v["name"])
            mptest.eq(g.time_seen_s2020 + EPOCH, d["t_unix_s"], v["name"])
            if d["status"] == "A":
                mptest.true(g.rmc_valid, v["name"])
                mptest.eq(g.rmc_lat, d["lat_e7"], v["name"])
                mptest.eq(g.rmc_lon_hi * 65536 + g.rmc_lon_lo, d["lon_e7"], v["name"])
                mptest.eq(g.rmc_speed, d["speed_kmh_x10"], v["name"])
                want = d["course_x10"]
                mptest.eq(g.rmc_course, wire.COURSE_UNKNOWN if want is None else want, v["name"])
            else:
                mptest.true(not g.rmc_valid, v["name"])
        else:
            mptest.eq(g.last_kind, 2)
            mptest.eq(g.gga_sod, d["utc_tod_s"], v["name"])
            mptest.eq(g.gga_q, d["fix_quality"], v["name"])
            if d["fix_quality"]:
                mptest.eq(g.gga_lat, d["lat_e7"], v["name"])
                mptest.eq(g.gga_lon_hi * 65536 + g.gga_lon_lo, d["lon_e7"], v["name"])
                mptest.eq(g.gga_sats, d["sats"], v["name"])
                mptest.eq(g.gga_hdop, d["hdop_x10"], v["name"])
                mptest.eq(g.gga_alt, d["alt_dm"], v["name"])
        n += 1
    mptest.true(n >= 10)


def test_bad_sentences_are_counted_not_parsed():
    for v in V:
        if v["ok"]:
            continue
        g = GNSS(None, {"min_year": 2000})
        feed(g, _line(v))
        mptest.eq(g.sentences_ok, 0, v["name"])
        mptest.eq(g.fixes, 0, v["name"])
        mptest.true(g.checksum_errors + g.overlong + g.bytes_skipped > 0, v["name"])


def _pair(name_rmc, name_gga):
    r = [v for v in V if v["name"].startswith(name_rmc)][0]
    g = [v for v in V if v["name"].startswith(name_gga)][0]
    return r, g


def test_fix_needs_rmc_a_and_gga_of_the_same_second():
    r, gg = _pair("Shuangjing RMC", "Shuangjing GGA")
    g = GNSS(None)
    feed(g, _line(r))
    mptest.eq(g.fixes, 0)
    feed(g, _line(gg))
    mptest.eq(g.fixes, 1)
    t = r["decoded"]["t_unix_s"] - EPOCH
    mptest.true(g.has_fix(t))
    s = wire.Sample(b"x")
    mptest.true(g.fill(s, t))
    mptest.eq(s.lat_e7, r["decoded"]["lat_e7"])
    mptest.eq(s.lon_e7, r["decoded"]["lon_e7"])
    mptest.eq(s.sats, gg["decoded"]["sats"])
    mptest.eq(s.alt_dm, gg["decoded"]["alt_dm"])
    mptest.true(not g.fill(s, t + 1))
    mptest.eq(s.fix_quality, 0)


def _sentence(body):
    c = 0
    for ch in body:
        c ^= ord(ch)
    return ("$%s*%02X\r\n" % (body, c)).encode()


def test_out_of_wire_range_fields_are_held_or_refused_and_counted():
    # altitude beyond the wire's i16 decimetres is held at the limit and counted; a speed or a
    # field too long for a small integer makes the sentence a bad field (no fix), never a crash
    g = GNSS(None)
    feed(g, _sentence("GPRMC,010203.00,A,3953.6183,N,11628.2294,E,12.5,90.0,031226,,,A"))
    feed(g, _sentence("GPGGA,010203.00,3953.6183,N,11628.2294,E,1,300,0.9,3656.1,M,0,M,,"))
    mptest.eq(g.fixes, 1)
    mptest.eq(g.alt_dm, 32767)
    mptest.eq(g.alt_out_of_range, 1)
    mptest.eq(g.sats, 255)
    bad = g.bad_fields
    feed(g, _sentence("GPRMC,010204.00,A,3953.6183,N,11628.2294,E,999999.0,90.0,031226,,,A"))
    feed(g, _sentence("GPRMC,010205.00,A,3953.6183,N,11628.2294,E,1234567890123,90.0,031226,,,A"))
    feed(g, _sentence("GPRMC,010206.00,A,3953.6183,N,11628.2294,E,1.0,360.5,031226,,,A"))
    mptest.eq(g.bad_fields, bad + 3)
    mptest.eq(g.fixes, 1)


def test_every_hemisphere_and_the_antimeridian_without_allocating():
    # longitudes x1e7 beyond 2^30 (east of 107.37 degrees, west of -107.37) are held in halves
    cases = (("8959.99999", "N", "17959.99999", "E", 899999998, 1799999998),
             ("3352.1280", "S", "15112.5580", "E", -338688000, 1512093000),
             ("3436.2220", "S", "05822.8960", "W", -346037000, -583816000),
             ("6113.0860", "N", "14954.0180", "W", 612181000, -1499003000),
             ("0000.00000", "N", "00000.00000", "W", 0, 0))
    lines = []
    for la, lah, lo, loh, _, _ in cases:
        lines.append(_sentence("GPRMC,010203.00,A,%s,%s,%s,%s,0.5,,031226,,,A" % (la, lah, lo, loh)))
        lines.append(_sentence("GPGGA,010203.00,%s,%s,%s,%s,1,9,0.9,50.0,M,0,M,," % (la, lah, lo, loh)))
    g = GNSS(None)
    got_lat = [0] * len(cases)
    got_hi = [0] * len(cases)
    got_lo = [0] * len(cases)
    feed(g, lines[0])     # warm: first use of every code path outside the lock
    feed(g, lines[1])
    g.fix_t_s2020 = -1
    micropython.heap_lock()
    try:
        for i in range(len(cases)):
            feed(g, lines[2 * i])
            feed(g, lines[2 * i + 1])
            got_lat[i] = g.lat_e7
            got_hi[i] = g.lon_e7_hi
            got_lo[i] = g.lon_e7_lo
            g.fix_t_s2020 = -1      # the same second again counts as a new fix
    finally:
        micropython.heap_unlock()
    for i in range(len(cases)):
        mptest.eq(got_lat[i], cases[i][4], cases[i][0])
        mptest.eq(got_hi[i] * 65536 + got_lo[i], cases[i][5], cases[i][2])


def test_no_fix_sentences_never_make_a_fix():
    g = GNSS(None, {"min_year": 2000})
    for v in V:
        if v["name"].startswith("LEA-"):
            feed(g, _line(v))
    mptest.eq(g.fixes, 0)
    mptest.true(g.time_seen_s2020 != -1)   # the time was seen, but it set nothing


def test_old_receiver_date_is_not_a_fix():
    r, gg = _pair("u-blox 6H RMC", "u-blox 6H GGA")   # 2013: a receiver's default, not now
    g = GNSS(None)
    feed(g, _line(r) + _line(gg))
    mptest.eq(g.fixes, 0)


def test_resync_after_garbage_split_and_glued_sentences():
    r, gg = _pair("Shuangjing RMC", "Shuangjing GGA")
    stream = b"\x00\xff$GPG" + _line(r)[:20] + b"\x13\x37" + _line(r) + _line(gg)
    g = GNSS(None)
    for i in range(0, len(stream), 7):      # split at odd places
        feed(g, stream[i:i + 7])
    mptest.eq(g.fixes, 1)
    mptest.true(g.bytes_skipped > 0)


def test_random_bytes_never_raise():
    g = GNSS(None)
    for i in range(200):
        feed(g, mptest.rand_bytes(64))
    feed(g, b"$" + b"9" * 200 + b"\r\n")
    feed(g, b"$GPRMC,99,A,xx.y,N,,E,..,..,999999,,,A*00\r\n")
    mptest.true(True)


def test_steady_state_parse_does_not_allocate():
    r, gg = _pair("Shuangjing RMC", "Shuangjing GGA")
    data = _line(r) + _line(gg)
    g = GNSS(None)
    feed(g, data)
    s = wire.Sample(b"x")
    t = r["decoded"]["t_unix_s"] - EPOCH
    micropython.heap_lock()
    try:
        for i in range(100):
            feed(g, data)
            g.fill(s, t)
            g.has_fix(t)
    finally:
        micropython.heap_unlock()
    mptest.eq(g.sentences_ok, 202)


mptest.main(globals())
