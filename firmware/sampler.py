# The sampling side of the box: the io task (polls every driver's bus, keeps the clock from its
# time sources, checks the emulated watchdog) and the sampler task (at each grid second, a UTC
# multiple of the period: request, wait, fill, calibrate, encode, append to the journal). It never
# waits for the network: the uplink (firmware/uplink.py) reads what the journal holds.
#
# Time sources (firmware/clock.py): a GNSS fix, the link's network time (SNTP or the modem's
# clock), the board's RTC kept across a reset; each sample is flagged with the one that set the
# clock. Before any of them the sampler keeps sampling every period on the tick counter and holds
# the samples in a file on flash (`held.bin` in the state directory) with their age; when time
# arrives they are stamped with the UTC second they were taken and journaled. A reboot before that
# loses them (counted, `held_lost_at_boot`, and logged: the ticks of a previous boot relate to no
# time). docs/firmware.md, "Clock".
#
# A sample the journal cannot take (the flash failing even after dropping its oldest data) is not
# lost silently: it is kept in RAM for the uplink to send live (`unjournaled`), counted, and the
# watchdog is still fed, because the box is sampling; a reboot loop would lose more.

import asyncio
import os

from . import wire
from .clock import SOURCE_GNSS, SOURCE_NAMES, SOURCE_NTP, SOURCE_RTC
from .compat import cold, const, ticks_diff


_SLOPE_ONE = const(10000)
# the wire flag of each clock source (clock.SOURCE_*)
_SRC_FLAG = (0, wire.FLAG_CLOCK_FROM_GPS, wire.FLAG_CLOCK_FROM_NTP, wire.FLAG_CLOCK_FROM_RTC)
_HOLD_MAX_MS = const(0x20000000)   # 6.2 days without any time: the held samples are given up
_RTC_EVERY_S = const(3600)         # the RTC is written again from the clock once an hour
_NEVER_S = const(0x3FFFFFFF)
_FIX_RECENT_S = const(5)           # a receiver with a fix this recent is waited for


class Applied:
    """A validated config (firmware/config.py) compiled for the sampler's integer hot path."""
    # set by channels.compile_into (annotations only: MicroPython compiles them to nothing)
    cfg: dict
    version: int
    period_s: int
    enabled_mask: int              # a bit per wire channel
    any_cal: bool
    slope_e4: "list | None"        # per channel; None without a calibration
    offset_raw: "list | None"

    def __init__(self, cfg):
        # names to indices, the mask and the calibration tables: firmware/channels.py (loaded
        # for this compile only, with the names)
        cold("channels").compile_into(self, cfg)

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
    SRC_FLAG = _SRC_FLAG

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
        # before the clock is known: samples held on flash with their age (held.bin, stamped
        # and journaled when time arrives); buffers made on first need and freed after
        self.hold_path = b.state_dir + "/held.bin"
        self.hold = None            # firmware/hold.py's Hold while samples are held
        self._mono = 0              # the hold counter: ms since boot while the clock is unknown
        self._mono_tick = b.ticks_ms()
        self.held = 0               # samples in held.bin now
        self.held_stamped = 0       # held samples stamped and journaled (this boot)
        self.hold_dropped = 0       # samples not held (file full, flash error, 6 days)
        self.held_lost_at_boot = 0
        try:
            os.stat(self.hold_path)
            self.held_lost_at_boot = _hold().lost_at_boot(self)
        except OSError:
            pass                    # no file: the usual boot (the module is not even loaded)
        self.rtc_ok = False         # the board's RTC holds the clock's time (TLS needs it)
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

    def time_ok(self):
        """The clock is known and the board's RTC holds it (what TLS needs)."""
        return self.clock.known() and self.rtc_ok

    # ---------------------------------------------------------------- io
    async def io_task(self):
        b = self.board
        g = self.gnss
        clk = self.clock
        link = b.link
        for d in self.sensors:
            d.start(b.ticks_ms())
        g.start(b.ticks_ms())
        # the board's RTC, if it kept a time across a reset: the least trusted source, at once
        r = b.rtc_s2020()
        if r is not None and not clk.known():
            clk.set(r[0], r[1], SOURCE_RTC)
            self.rtc_ok = True
        net_seen = None
        seen = 0
        rtc_at = _NEVER_S   # when to write the RTC next (on a device, TLS reads it)
        while not self.done:
            now = b.ticks_ms()
            if g.poll(now):
                # the RMC/GGA of second fix_t_s2020 has just arrived: that second began now
                clk.set(g.fix_t_s2020, now, SOURCE_GNSS)
            if link is not None:
                lt = link.time_s2020()
                if lt is not None and lt is not net_seen:
                    net_seen = lt
                    clk.set(lt[0], lt[1], SOURCE_NTP)
            src = clk.source
            if src:
                t = clk.now_s(now)
                if src != seen:
                    b.log("clock: %s (step %d ms)" % (SOURCE_NAMES[src], clk.last_step_ms))
                    seen = src
                    rtc_at = t + 1
                if t >= rtc_at:
                    # the first pass of a second: the RTC is exact to one pass of this loop
                    b.set_rtc(t)
                    self.rtc_ok = True
                    rtc_at = t + _RTC_EVERY_S
                clk.keep(now)
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
                # no UTC yet: keep sampling on the tick counter, held on flash; stamped later
                now = b.ticks_ms()
                self._mono += ticks_diff(now, self._mono_tick)
                self._mono_tick = now
                if self._mono > _HOLD_MAX_MS:
                    _hold().give_up(self)
                if ticks_diff(now, hold_tick) >= period * 1000:
                    hold_tick = now
                    await self._take(-1)
                continue
            if self.hold is not None:
                await _hold().stamp(self)
            if next_t < 0 or next_t % period:
                next_t = (clk.now_s() // period + 1) * period
            # Trigger on the fix of the grid second itself (exact position), or on the clock
            # when no fix of that second comes (receiver lost the sky): while the receiver has
            # fixes, up to fix_wait_ms after the second; without one for a while (a garage, a
            # tunnel), a third of that (a late request would measure the next slot's air, and
            # the first fix after a long gap may still be that second's)
            w = b.fix_wait_ms
            if g.fix_t_s2020 < next_t - _FIX_RECENT_S:
                w //= 3
            if not g.has_fix(next_t) and clk.now_ms_since(next_t) < w:
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
            s.flags = _SRC_FLAG[self.clock.source]
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

    # ---------------------------------------------------------------- held before the clock
    # (the file and the stamping: firmware/hold.py, loaded when needed and unloaded after)
    def _hold(self, s, tick):
        """Before the clock is known: append the sample to held.bin with its age on the hold
        counter (no allocation once the file is open)."""
        b = self.board
        b.wdt_feed()            # the box is sampling
        s.t_s2020 = 0
        s.seq = 0
        h = self.hold
        if h is None:
            h = self.hold = _hold().Hold(self.hold_path, b.hold_max_bytes)
        try:
            if h.append(s, self._mono + ticks_diff(tick, self._mono_tick)):
                self.held += 1
                return
        except OSError as e:
            self.log("hold: write failed: %r" % (e,))
        self.hold_dropped += 1      # full (the oldest held samples stay) or the flash refused


def _hold():
    from . import hold
    return hold
