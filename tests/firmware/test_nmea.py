# GNSS NMEA driver under MicroPython, against tests/vectors/nmea.json (shared with the simulator).
import micropython
import mptest
from firmware import wire
from firmware.drivers.nmea import GNSS, days_from_civil

V = mptest.vectors("nmea")["vectors"]
EPOCH = wire.EPOCH_2020_UNIX_S


def _line(v):
    return mptest.unhex(v["hex"])


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
        g.feed(_line(v))
        mptest.eq(g.sentences_ok, 1, v["name"])
        mptest.eq(g.checksum_errors, 0, v["name"])
        if d["type"] == "RMC":
            mptest.eq(g.last_kind, 1)
            mptest.eq(chr(g.rmc_status), d["status"], v["name"])
            mptest.eq(g.time_seen_s2020 + EPOCH, d["t_unix_s"], v["name"])
            if d["status"] == "A":
                mptest.true(g.rmc_valid, v["name"])
                mptest.eq(g.rmc_lat, d["lat_e7"], v["name"])
                mptest.eq(g.rmc_lon, d["lon_e7"], v["name"])
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
                mptest.eq(g.gga_lon, d["lon_e7"], v["name"])
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
        g.feed(_line(v))
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
    g.feed(_line(r))
    mptest.eq(g.fixes, 0)
    g.feed(_line(gg))
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


def test_no_fix_sentences_never_make_a_fix():
    g = GNSS(None, {"min_year": 2000})
    for v in V:
        if v["name"].startswith("LEA-"):
            g.feed(_line(v))
    mptest.eq(g.fixes, 0)
    mptest.true(g.time_seen_s2020 != -1)   # the time was seen, but it set nothing


def test_old_receiver_date_is_not_a_fix():
    r, gg = _pair("u-blox 6H RMC", "u-blox 6H GGA")   # 2013: a receiver's default, not now
    g = GNSS(None)
    g.feed(_line(r) + _line(gg))
    mptest.eq(g.fixes, 0)


def test_resync_after_garbage_split_and_glued_sentences():
    r, gg = _pair("Shuangjing RMC", "Shuangjing GGA")
    stream = b"\x00\xff$GPG" + _line(r)[:20] + b"\x13\x37" + _line(r) + _line(gg)
    g = GNSS(None)
    for i in range(0, len(stream), 7):      # split at odd places
        g.feed(stream[i:i + 7])
    mptest.eq(g.fixes, 1)
    mptest.true(g.bytes_skipped > 0)


def test_random_bytes_never_raise():
    import os
    g = GNSS(None)
    for i in range(200):
        g.feed(os.urandom(64))
    g.feed(b"$" + b"9" * 200 + b"\r\n")
    g.feed(b"$GPRMC,99,A,xx.y,N,,E,..,..,999999,,,A*00\r\n")
    mptest.true(True)


def test_steady_state_parse_does_not_allocate():
    r, gg = _pair("Shuangjing RMC", "Shuangjing GGA")
    data = _line(r) + _line(gg)
    g = GNSS(None)
    g.feed(data)
    s = wire.Sample(b"x")
    t = r["decoded"]["t_unix_s"] - EPOCH
    micropython.heap_lock()
    try:
        for i in range(100):
            g.feed(data)
            g.fill(s, t)
            g.has_fix(t)
    finally:
        micropython.heap_unlock()
    mptest.eq(g.sentences_ok, 202)


mptest.main(globals())
