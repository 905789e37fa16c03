# Time from every source, trusted in order (firmware/clock.py, firmware/sampler.py), under
# MicroPython with the real app, sampler and journal on fakes (tests/firmware/appfakes.py):
# GNSS over the network's time over the RTC kept across a reset; samples taken before any source
# held on flash and stamped when one comes; a reboot before that counts and drops them; TLS waits
# for the clock.
import asyncio
import os

import micropython
import mptest
from appfakes import FakeBoard, Script, nmea_second
from envbox.firmware import app as A
from envbox.firmware import wire
from envbox.firmware.clock import SOURCE_GNSS, SOURCE_NONE, SOURCE_NTP, SOURCE_RTC, Clock

T0 = 218000000      # seconds since 2020: 2026-11-28
MASK = (1 << 30) - 1
TICKS = wire.FLAG_TIME_FROM_TICKS
NTP = wire.FLAG_CLOCK_FROM_NTP
GPS = wire.FLAG_CLOCK_FROM_GPS
RTC = wire.FLAG_CLOCK_FROM_RTC
CLOCK_FLAGS = GPS | NTP | RTC


def test_flag_bits_are_distinct_and_0x04_stays_retired():
    bits = (wire.FLAG_CLOCK_FROM_GPS, wire.FLAG_CLOCK_FROM_NTP, wire.FLAG_TIME_FROM_TICKS,
            wire.FLAG_CALIBRATED, wire.FLAG_CLOCK_FROM_RTC)
    acc = 0
    for b in bits:
        mptest.eq(acc & b, 0, "flag 0x%02x used twice" % b)
        acc |= b
    mptest.eq(acc & 0x04, 0, "0x04 was FLAG_REPLAYED: not reused")


def test_sources_are_trusted_in_order_and_a_stale_one_gives_way():
    tk = [1000]
    c = Clock(lambda: tk[0], stale_s=3600)
    mptest.true(c.set(T0, 1000, SOURCE_RTC), "the RTC when there is nothing else")
    mptest.eq((c.first_source, c.first_tick), (SOURCE_RTC, 1000))
    mptest.true(c.set(T0 + 5, 1000, SOURCE_NTP), "network time over the RTC")
    mptest.true(not c.set(T0 + 9, 1000, SOURCE_RTC), "the RTC never over the network")
    mptest.true(c.set(T0 + 1, 1000, SOURCE_GNSS), "GNSS over everything")
    mptest.eq(c.last_step_ms, -4000)
    mptest.eq((c.source, c.first_source), (SOURCE_GNSS, SOURCE_RTC))
    tk[0] += 1000 * 1000
    mptest.true(not c.set(T0 + 1001, tk[0], SOURCE_NTP), "GNSS set the clock 1000 s ago")
    tk[0] += 3600 * 1000
    mptest.true(c.set(T0 + 4601, tk[0], SOURCE_NTP), "no fix for an hour: the network's time")
    mptest.eq(c.source, SOURCE_NTP)
    mptest.true(c.set(T0 + 4601, tk[0], SOURCE_GNSS), "a fix again")


def test_the_clock_reads_right_for_weeks_without_a_source_across_tick_wraps():
    tk = [(1 << 30) - 5000]
    c = Clock(lambda: tk[0])
    c.set(T0, tk[0], SOURCE_GNSS)
    for day in range(20):            # 20 days: the 2^30 ms counter wraps one and a half times
        for _ in range(24):
            tk[0] = (tk[0] + 3600000) & MASK
            c.keep(tk[0])
        mptest.eq(c.now_s(), T0 + (day + 1) * 86400, "day %d" % day)
    mptest.eq(c.now_s(None, 30000), T0 + 20 * 86400 - 30)


def _board(**kw):
    b = FakeBoard("pm-gnss", **kw)
    b.rtc_calls = []
    b.set_rtc = lambda t: b.rtc_calls.append((t, b.t_ms & MASK))
    return b


class Box:
    """An app on a fake board with its io and sampler tasks running (the uplink not started
    unless asked). Held samples' request ticks are recorded."""

    def __init__(self, b, sc=None, uplink=False):
        self.b = b
        self.sc = sc or Script()
        self.a = A.App(b, client_factory=self.sc.factory)
        smp = self.a.sampler
        self.ticks = []
        hold = smp._hold

        def rec(s, tick):
            self.ticks.append(tick)
            hold(s, tick)
        smp._hold = rec
        self.tasks = [asyncio.create_task(smp.io_task()), asyncio.create_task(smp.run())]
        if uplink:
            self.tasks.append(asyncio.create_task(self.a.uplink.run()))

    def stop(self):
        for t in self.tasks:
            t.cancel()

    def records(self):
        """(seq, decoded sample) of every journaled record, in seq order."""
        j = self.a.journal
        r = j.reader()
        r.seek_seq(0)
        buf = bytearray(wire.MAX_SAMPLE_BYTES)
        out = []
        while True:
            n = r.read(buf)
            if not n:
                break
            out.append(wire.decode(bytes(buf[:n])))
        r.close()
        return out


async def _until(cond, what, limit_ms=4000):
    for _ in range(limit_ms // 5):
        if cond():
            return
        await asyncio.sleep_ms(5)
    raise mptest.Fail("timed out waiting for " + what)


async def _period(box, held=None):
    """Let one sampling period pass on the board's clock."""
    await asyncio.sleep_ms(5)      # (the tasks have started)
    box.b.advance(10000)
    if held is not None:
        await _until(lambda: box.a.sampler.held == held, "%d held" % held)
    else:
        await asyncio.sleep_ms(40)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def test_samples_before_any_time_are_held_on_flash_then_stamped_by_network_time():
    b = _board()
    box = Box(b)
    smp = box.a.sampler
    for k in range(5):
        await _period(box, held=k + 1)
    mptest.eq(box.a.journal.next_seq, 0, "nothing journaled without a time")
    mptest.true(_exists(smp.hold_path), "held on flash")
    mptest.eq(smp.hold_dropped, 0)
    # the network's time arrives (the modem's clock, SNTP): second T0 began at this tick
    net_tick = b.ticks_ms()
    b.link.time = (T0, net_tick)
    await _until(lambda: box.a.journal.next_seq >= 5, "held samples journaled")
    mptest.eq(box.a.clock.source, SOURCE_NTP)
    await _period(box)
    await _period(box)
    recs = box.records()
    mptest.true(len(recs) >= 6, "held + grid samples")
    for i in range(5):
        d = recs[i]
        want = T0 + (((box.ticks[i] - net_tick + (1 << 29)) & MASK) - (1 << 29)) // 1000
        mptest.eq(d["t_utc_s"] - 1577836800, want, "held sample %d stamped at its second" % i)
        mptest.eq(d["flags"] & (TICKS | CLOCK_FLAGS), TICKS | NTP)
        mptest.eq(d["seq"], i)
    for d in recs[5:]:
        mptest.eq(d["flags"] & (TICKS | CLOCK_FLAGS), NTP, "grid samples: the network's time")
        mptest.eq((d["t_utc_s"] - 1577836800) % 10, 0, "on the grid")
    ts = [d["t_utc_s"] for d in recs]
    mptest.eq(ts, sorted(ts))
    mptest.eq((smp.held, smp.held_stamped), (0, 5))
    mptest.true(not _exists(smp.hold_path), "held.bin removed once stamped")
    # the RTC was written from the network's time at the start of a second (TLS reads it)
    mptest.true(smp.rtc_ok and b.rtc_calls, "RTC written")
    t, tick = b.rtc_calls[0]
    ms = box.a.clock.now_ms_since(t, tick)
    mptest.true(0 <= ms < 100, "RTC written %d ms into its second" % ms)
    # a fix: GNSS takes over; network time offered again is refused
    b.gnss_uart.inject(nmea_second(T0 + 25))
    await _until(lambda: box.a.clock.source == SOURCE_GNSS, "GNSS in force")
    b.link.time = (T0 + 999, b.ticks_ms())
    await _period(box)
    mptest.eq(box.a.clock.source, SOURCE_GNSS)
    mptest.eq(box.records()[-1]["flags"] & CLOCK_FLAGS, GPS)
    import json
    st = json.loads(box.a.status_json())
    mptest.eq((st["clock"], st["clock_first"], st["held_stamped"], st["held_before_clock"]),
              ("gnss", "network", 5, 0))
    box.stop()


async def test_the_rtc_kept_across_a_reset_stamps_at_once_and_gives_way():
    b = _board()
    # a watchdog reset: the RTC still counts; second T0 began 300 ms ago
    b.rtc_s2020 = lambda: (T0, (b.t_ms - 300) & MASK)
    box = Box(b)
    await _period(box)
    await _period(box)
    smp = box.a.sampler
    mptest.eq(smp.held, 0, "nothing held: the RTC has the time")
    mptest.true(not _exists(smp.hold_path))
    mptest.eq(box.a.clock.source, SOURCE_RTC)
    mptest.true(smp.time_ok(), "the RTC holds the clock's time: TLS may connect")
    recs = box.records()
    mptest.true(recs, "grid samples at once")
    mptest.eq(recs[0]["flags"] & CLOCK_FLAGS, RTC)
    b.link.time = (T0 + 20, b.ticks_ms())
    await _until(lambda: box.a.clock.source == SOURCE_NTP, "network over RTC")
    n = len(box.records())
    await _period(box)
    await _period(box)
    recs = box.records()
    mptest.true(len(recs) > n, "sampling goes on")
    mptest.eq(recs[-1]["flags"] & CLOCK_FLAGS, NTP, repr([(d["t_utc_s"], d["flags"]) for d in recs]))
    box.stop()


async def test_a_reboot_before_any_time_counts_and_drops_the_held_samples():
    b = _board()
    box = Box(b)
    for k in range(3):
        await _period(box, held=k + 1)
    box.stop()                     # the box resets (no clean shutdown), still without a time
    b2 = _board(partition=b.partition)
    b2.state_dir = b.state_dir
    box2 = Box(b2)
    smp = box2.a.sampler
    mptest.eq(smp.held_lost_at_boot, 3)
    mptest.true([m for m in b2.logs if "3 samples taken before any time source" in m],
                "the log says why")
    mptest.true(not _exists(smp.hold_path), "the old file is gone")
    await _period(box2, held=1)     # this boot holds its own
    b2.link.time = (T0, b2.ticks_ms())
    # held_stamped counts once every held record is journaled (the journal's seq moves first)
    await _until(lambda: smp.held_stamped >= 1, "this boot's held sample stamped")
    import json
    st = json.loads(box2.a.status_json())
    mptest.eq((st["held_lost_at_boot"], st["held_stamped"]), (3, 1))
    mptest.eq(st["boot"], 2)
    box2.stop()


async def test_a_torn_held_record_is_counted_the_rest_stamped():
    b = _board()
    box = Box(b)
    for k in range(3):
        await _period(box, held=k + 1)
    smp = box.a.sampler
    smp.hold.close()
    with open(smp.hold_path, "rb") as f:
        data = f.read()
    with open(smp.hold_path, "wb") as f:
        f.write(data[:-5])            # the power went during the last write
    b.link.time = (T0, b.ticks_ms())
    await _until(lambda: box.a.journal.next_seq >= 2, "the intact ones journaled")
    await asyncio.sleep_ms(20)
    mptest.eq((smp.held_stamped, smp.hold_dropped), (2, 1))
    box.stop()


async def test_a_full_hold_counts_what_it_cannot_keep():
    b = _board()
    box = Box(b)
    smp = box.a.sampler
    await _period(box, held=1)
    smp.hold.max_bytes = 2 * smp.hold.bytes     # room for two records
    await _period(box, held=2)
    await _period(box)
    await _period(box)
    mptest.eq((smp.held, smp.hold_dropped), (2, 2), "the oldest stay, newer ones counted")
    mptest.true(b.fed >= 4, "the watchdog is fed while holding")
    box.stop()


async def test_holding_a_sample_allocates_nothing():
    b = _board()
    box = Box(b)
    await _period(box, held=1)     # the file is open, the buffers made
    box.stop()
    smp = box.a.sampler
    s = smp.sample
    hold = A.Sampler._hold      # (not the test's recording wrapper)
    tick = b.ticks_ms()
    micropython.heap_lock()
    try:
        for _ in range(20):
            hold(smp, s, tick)
    finally:
        micropython.heap_unlock()
    mptest.eq(smp.held, 21)


async def test_tls_waits_for_the_clock_plain_mqtt_does_not():
    sc = Script()
    b = _board()
    box = Box(b, sc, uplink=True)
    await _until(lambda: sc.connects >= 1, "a plain connection without a clock")
    mptest.eq(box.a.clock.source, SOURCE_NONE)
    box.stop()

    sc = Script()
    b = _board()
    b.mqtt_ssl = object()          # TLS: the certificates' dates need the clock
    box = Box(b, sc, uplink=True)
    await asyncio.sleep_ms(150)
    mptest.eq(sc.connects, 0, "no TLS connect before the clock is known")
    b.link.time = (T0, b.ticks_ms())
    await asyncio.sleep_ms(50)
    mptest.eq(sc.connects, 0, "known, but the RTC is written at the next second")
    b.advance(1000)
    await _until(lambda: sc.connects >= 1, "TLS connect once the RTC holds the time")
    mptest.true(box.a.uplink.tls_clock_wait_ms >= 0)
    mptest.true(b.rtc_calls, "RTC written before the handshake")
    box.stop()


mptest.main(globals())
