# Tick arithmetic across the wrap of a device's 2^30 ms counter (12.4 days), under MicroPython.
# The 64-bit Unix port's own time.ticks_diff uses a 2^62 period: a counter that wraps at 2^30
# (the sim board's, a device's) read through it made the drivers warm up for ever after the wrap.
import micropython
import mptest
from drivers_fakes import FakeUART, unhex, vectors
from envbox.firmware import wire
from envbox.firmware.compat import ticks_add, ticks_diff
from envbox.firmware.drivers.pms5003 import PMS5003

WRAP = 1 << 30


def test_ticks_diff_across_the_wrap():
    mptest.eq(ticks_diff(5, WRAP - 5), 10)
    mptest.eq(ticks_diff(WRAP - 5, 5), -10)
    mptest.eq(ticks_add(WRAP - 1, 1), 0)
    mptest.eq(ticks_diff(ticks_add(WRAP - 1000, 250000), WRAP - 1000), 250000)
    mptest.eq(ticks_diff(123, 123), 0)
    out = [0]
    top = 0x3FFFFFFF                 # the last tick before the wrap (2^30 is no small int on 32 bits)
    micropython.heap_lock()
    try:
        for k in range(1, 100):
            out[0] = ticks_diff(k, top - k + 1)
    finally:
        micropython.heap_unlock()
    mptest.eq(out[0], 198)


def test_a_driver_started_before_the_wrap_is_warm_after_it():
    frame = unhex([v for v in vectors("pms5003")["vectors"] if v["ok"]][0]["hex"])
    u = FakeUART()
    p = PMS5003(u, {})
    t0 = WRAP - 1000                 # one second before the counter wraps
    p.start(t0)
    later = ticks_add(t0, 60000)     # a minute later: past the 30 s warm-up, after the wrap
    p.request(later)
    u.inject(frame)
    p.poll(later)
    s = wire.Sample(b"x")
    p.fill(s, later)
    mptest.eq(s.status[wire.CH_PM25], wire.STATUS_OK)


mptest.main(globals())
