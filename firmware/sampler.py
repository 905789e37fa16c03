# The sampling side of the box: the io task (polls every driver's bus, disciplines the clock from
# GNSS fixes, checks the emulated watchdog) and the sampler task (at each grid second, a UTC
# multiple of the period: request, wait, fill, calibrate, encode, append to the journal). It never
# waits for the network: the uplink (firmware/uplink.py) reads what the journal holds.
#
# A sample the journal cannot take (the flash failing even after dropping its oldest data) is not
# lost silently: it is kept in RAM for the uplink to send live (`unjournaled`), counted, and the
# watchdog is still fed, because the box is sampling; a reboot loop would lose more.

import asyncio

from . import wire
from .clock import SOURCE_GNSS, SOURCE_NTP
from .compat import ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_SLOPE_ONE = const(10000)


class Applied:
    """A validated config (firmware/config.py) compiled for the sampler's integer hot path."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.version = cfg["version"]
        self.period_s = cfg["period_s"]
        names = [c[0] for c in wire.CHANNELS]
        mask = (1 << wire.N_CHANNELS) - 1
        if cfg["channels"] is not None:
            mask = 0
            for n in cfg["channels"]:
                mask |= 1 << names.index(n)
        self.enabled_mask = mask
        self.slope_e4 = [_SLOPE_ONE] * wire.N_CHANNELS
        self.offset_raw = [0] * wire.N_CHANNELS
        self.any_cal = False
        for n in cfg["cal"]:
            i = names.index(n)
            c = cfg["cal"][n]
            self.slope_e4[i] = int(c["slope"] * _SLOPE_ONE + 0.5)
            o = c["offset"] * wire.CHANNELS[i][1]
            self.offset_raw[i] = int(o + 0.5) if o >= 0 else -int(-o + 0.5)
            if self.slope_e4[i] != _SLOPE_ONE or self.offset_raw[i]:
                self.any_cal = True

    def apply(self, s):
        """Disable channels and correct values of Sample s in place; no allocation."""
        st = s.status
        val = s.value
        m = self.enabled_mask
        for i in range(wire.N_CHANNELS):
            if not m & (1 << i):
                st[i] = wire.STATUS_NOT_FITTED
                val[i] = 0
        if not self.any_cal:
            return
        done = False
        for i in range(wire.N_CHANNELS):
            c = st[i]
            if c == wire.STATUS_OK or c == wire.STATUS_OUT_OF_RANGE:
                k = self.slope_e4[i]
                o = self.offset_raw[i]
                if k != _SLOPE_ONE or o:
                    # x * k / 10^4 as x * whole + x * frac / 10^4: with slopes up to 10 (10^5)
                    # the plain product of a 16-bit count passes 2^30, a heap integer on 32 bits
                    x = val[i]
                    w = k // _SLOPE_ONE
                    v = x * (k - w * _SLOPE_ONE)
                    v = (v + 5000) // 10000 if v >= 0 else -((-v + 5000) // 10000)
                    val[i] = x * w + v + o
                    done = True
        if done:
            s.flags |= wire.FLAG_CALIBRATED


class Sampler:
    def __init__(self, board, clock, journal, applied, device, log, on_dropped=None):
        b = board
        self.board = b
        self.clock = clock
        self.journal = journal
        self.cfg = applied
        self.gnss = b.gnss
        self.sensors = b.sensors
        self.log = log
        self.sample = wire.Sample(device)
        self.rec = bytearray(wire.MAX_SAMPLE_BYTES)
        # one sample the journal could not take, for the uplink to send live (made on first need)
        self.unjournaled = None
        self.unjournaled_n = 0
        self.unjournaled_seq = -1
        # before the clock is known: samples held with their tick (stamped when time is known)
        # (one buffer, made on first need and freed once stamped: most boots never need it)
        self.hold = None
        self.hold_n = None
        self.hold_tick = None
        self.held = 0
        self.hold_dropped = 0
        self.samples = 0
        self.late_slots = 0
        self.cycle_errors = 0
        self.journal_failures = 0      # samples the journal could not take (sent from RAM)
        self.unjournaled_lost = 0      # of those, overwritten before the uplink sent them
        self.wake = asyncio.Event()    # set when a sample was journaled (the uplink waits on it)
        self.on_dropped = on_dropped   # callback when the journal dropped old records
        self._dropped_seen = journal.dropped
        self.done = False

    @property
    def period_s(self):
        return self.cfg.period_s

    # ---------------------------------------------------------------- io
    async def io_task(self):
        b = self.board
        g = self.gnss
        clk = self.clock
        for d in self.sensors:
            d.start(b.ticks_ms())
        g.start(b.ticks_ms())
        rtc_set = False
        while not self.done:
            now = b.ticks_ms()
            if g.poll(now):
                # the RMC/GGA of second fix_t_s2020 has just arrived: that second began now
                clk.set(g.fix_t_s2020, now, SOURCE_GNSS)
                if not rtc_set:
                    b.set_rtc(g.fix_t_s2020)
                    rtc_set = True
            for d in self.sensors:
                d.poll(now)
            b.wdt_check()
            await asyncio.sleep_ms(b.poll_ms)

    # ---------------------------------------------------------------- sampler
    async def run(self):
        b = self.board
        clk = self.clock
        g = self.gnss
        next_t = -1
        hold_tick = b.ticks_ms()
        while True:
            await asyncio.sleep_ms(b.poll_ms)
            period = self.cfg.period_s
            if not clk.known():
                # no UTC yet: keep sampling on the tick counter; stamp later
                if ticks_diff(b.ticks_ms(), hold_tick) >= period * 1000:
                    hold_tick = b.ticks_ms()
                    await self._take(-1)
                continue
            if self.held:
                self._stamp_held()
            if next_t < 0 or next_t % period:
                next_t = (clk.now_s() // period + 1) * period
            # Trigger on the fix of the grid second itself (exact position), or on the clock
            # when no fix of that second comes (receiver lost the sky).
            if not g.has_fix(next_t) and clk.now_ms_since(next_t) < b.fix_wait_ms:
                continue
            t = next_t
            next_t += period
            behind = clk.now_ms_since(next_t)
            if behind > 0:
                # we were stalled for more than a period; skip to the current grid slot
                skip = behind // (period * 1000) + 1
                self.late_slots += skip
                next_t += skip * period
            await self._take(t)
            if b.run_until_s2020 is not None and t >= b.run_until_s2020:
                return

    async def _take(self, t):
        b = self.board
        start = b.ticks_ms()
        for d in self.sensors:
            d.request(start)
        while True:
            ready = True
            for d in self.sensors:
                if not d.ready():
                    ready = False
            if ready or ticks_diff(b.ticks_ms(), start) >= b.answer_timeout_ms:
                break
            await asyncio.sleep_ms(b.poll_ms)
        s = self.sample
        s.clear_channels()
        now = b.ticks_ms()
        for d in self.sensors:
            d.fill(s, now)
        s.flags = 0
        if t >= 0:
            self.gnss.fill(s, t)
            src = self.clock.source
            s.flags = (wire.FLAG_CLOCK_FROM_GPS if src == SOURCE_GNSS else
                       wire.FLAG_CLOCK_FROM_NTP if src == SOURCE_NTP else 0)
        else:
            s.fix_quality = 0
        self.cfg.apply(s)
        if t < 0:
            self._hold(s, start)
            return
        s.t_s2020 = t
        self._journal(s)

    def _journal(self, s):
        j = self.journal
        s.seq = j.next_seq
        n = wire.encode_into(self.rec, s)
        try:
            j.append(self.rec, n)
        except OSError as e:
            # the flash failed even after the journal dropped its oldest data: keep this
            # sample in RAM for the uplink (the next one replaces it) and keep sampling
            self.journal_failures += 1
            self.log("journal append failed: %r" % (e,))
            if self.unjournaled_n:
                self.unjournaled_lost += 1
            if self.unjournaled is None:
                self.unjournaled = bytearray(wire.MAX_SAMPLE_BYTES)
            buf = self.unjournaled
            for i in range(n):
                buf[i] = self.rec[i]
            self.unjournaled_n = n
            self.unjournaled_seq = s.seq
            j.next_seq = s.seq + 1     # the seq is used: the gateway counts it as sent
            # not on flash, so nothing can send it again: the release cursor must not wait for
            # a gateway's word on it (it would wait for ever and resend the rest in a loop)
            j.ack(s.seq, s.seq + 1)
        self.samples += 1
        if j.dropped != self._dropped_seen:
            self._dropped_seen = j.dropped
            if self.on_dropped is not None:
                self.on_dropped()
        self.board.wdt_feed()       # fed by every sampling cycle that produced a sample
        self.wake.set()

    def _hold(self, s, tick):
        """Before the clock is known: keep the sample in RAM with its tick."""
        k = self.board.hold_slots
        if self.hold is None:
            self.hold = bytearray(k * wire.MAX_SAMPLE_BYTES)
            self.hold_n = [0] * k
            self.hold_tick = [0] * k
        if self.held == k:
            self.hold_dropped += 1   # the oldest held samples stay; newer ones are counted
            self.board.wdt_feed()
            return
        i = self.held
        s.t_s2020 = 0
        s.seq = 0
        hold = self.hold
        self.hold_n[i] = wire.encode_into(memoryview(hold)[i * wire.MAX_SAMPLE_BYTES:], s)
        self.hold_tick[i] = tick
        self.held += 1
        self.board.wdt_feed()

    def _stamp_held(self):
        """The clock is known: stamp each held sample with the UTC second of its tick, flag it
        FLAG_TIME_FROM_TICKS, and journal it (oldest first, before any grid sample)."""
        s = self.sample
        hold = self.hold
        if hold is None:
            return
        mv = memoryview(hold)
        for i in range(self.held):
            wire.decode_into(s, mv[i * wire.MAX_SAMPLE_BYTES:], self.hold_n[i])
            s.t_s2020 = self.clock.now_s(self.hold_tick[i])
            s.flags |= wire.FLAG_TIME_FROM_TICKS | (
                wire.FLAG_CLOCK_FROM_GPS if self.clock.source == SOURCE_GNSS else
                wire.FLAG_CLOCK_FROM_NTP)
            self._journal(s)
        self.held = 0
        self.hold = self.hold_n = self.hold_tick = None
