# Before the box has a time (docs/firmware.md, "Clock"): the RTC read at boot, and samples taken
# before any time source, held on flash until one comes. Loaded when needed (the board's
# rtc_s2020 at boot; the sampler when it first holds a sample or finds a file a previous boot
# left) and unloaded after: most of a box's life needs none of it, and every KB of a 110 KB heap
# counts.
#
# held.bin in the state directory, appended record by record (synced: a crash leaves every
# record but a torn last one), little-endian:
#
#   1  magic 0xE7
#   1  n, the wire payload's length
#   2  CRC-16/CCITT-FALSE over the age and the payload
#   4  age: ms of the sampler's hold counter when the sample was requested (a counter that
#      does not wrap for 6 days, unlike the 2^30 ms tick counter)
#   n  the KIND_SAMPLE payload (t_s2020 = 0, seq = 0), padded with whatever to a multiple of 8
#
# A reader stops at the first record that is short, has another magic or fails its CRC.

import asyncio
import os
import sys

from . import wire
from .clock import SOURCE_NAMES
from .compat import const, ticks_add, ticks_diff
from .journal import crc16, u32


MAGIC = const(0xE7)
HDR = const(8)


class Hold:
    def __init__(self, path, max_bytes):
        self.path = path
        self.max_bytes = max_bytes
        self.f = None
        self.bytes = 0
        n = (wire.MAX_SAMPLE_BYTES + 7) & ~7
        self.buf = bytearray(n)       # the payload (decode_into reads it from offset 0)
        self.hdr = bytearray(HDR)
        mv = memoryview(self.buf)
        # a view per padded length (index: length // 8), so reads and writes slice nothing (a
        # loop, not a comprehension: that would make `mv` a closure cell)
        v = []
        for k in range(n // 8 + 1):
            v.append(mv[:8 * k])
        self.views = v

    def append(self, s, age):
        """Append Sample s with its age. True when it is on flash; False when the hold is full;
        raises OSError when the flash refused it. Allocates nothing once the file is open."""
        buf = self.buf
        n = wire.encode_into(buf, s)
        padded = (n + 7) & ~7
        if self.bytes + HDR + padded > self.max_bytes:
            return False
        h = self.hdr
        h[0] = MAGIC
        h[1] = n
        h[4] = age & 0xFF
        h[5] = (age >> 8) & 0xFF
        h[6] = (age >> 16) & 0xFF
        h[7] = (age >> 24) & 0xFF
        crc = crc16(buf, 0, n, crc16(h, 4, 8))
        h[2] = crc & 0xFF
        h[3] = crc >> 8
        f = self.f
        if f is None:
            f = self.f = open(self.path, "ab")
        f.write(h)
        f.write(self.views[padded >> 3])
        f.flush()
        self.bytes += HDR + padded
        return True

    def close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None

    def records(self):
        """Each intact record in order: yields (payload length, age), the payload in self.buf
        (valid until the next one)."""
        self.close()
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        h = self.hdr
        try:
            while True:
                if f.readinto(h) != HDR or h[0] != MAGIC:
                    return
                n = h[1]
                padded = (n + 7) & ~7
                if padded >= len(self.views) * 8 or f.readinto(self.views[padded >> 3]) != padded:
                    return
                if crc16(self.buf, 0, n, crc16(h, 4, 8)) != h[2] | h[3] << 8:
                    return
                yield n, u32(h, 4)
        finally:
            f.close()

    def remove(self):
        self.close()
        self.bytes = 0
        try:
            os.remove(self.path)
        except OSError:
            pass



# an RTC reading before this (2025-01-01) is the RTC's epoch after a power cut, not a time
RTC_VALID_FROM_S2020 = const(157852800)


def read_rtc(board):
    """BoardBase.rtc_s2020: machine.RTC's time as (t_s2020, tick at which that second began),
    or None (no RTC on this port, or it reads its epoch)."""
    import time
    try:
        import machine
        dt = machine.RTC().datetime()
        tick = board.ticks_ms()
        t = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0)) \
            - board._epoch_to_2020_s()
    except Exception:  # noqa: BLE001 - no RTC on this port
        return None
    if t < RTC_VALID_FROM_S2020:
        return None
    # subseconds: microseconds on the esp32 port, 0 where the port does not keep them
    sub_ms = dt[7] // 1000 if 0 < dt[7] < 1000000 else 0
    return t, ticks_add(tick, -sub_ms)


# ---- what the sampler does with it (firmware/sampler.py calls these)


async def stamp(smp):
    """The clock is known: stamp each held sample with the UTC second it was taken (from its
    age on the hold counter), flag it FLAG_TIME_FROM_TICKS and the clock's source, and journal
    it, oldest first, before any grid sample."""
    h = smp.hold
    smp.hold = None
    clk = smp.clock
    now = smp.board.ticks_ms()
    mono_now = smp._mono + ticks_diff(now, smp._mono_tick)
    s = smp.sample
    k = 0
    for n, age in h.records():
        wire.decode_into(s, h.buf, n)
        s.t_s2020 = clk.now_s(now, mono_now - age)
        s.flags |= wire.FLAG_TIME_FROM_TICKS | smp.SRC_FLAG[clk.source]
        smp._journal(s)
        k += 1
        await asyncio.sleep_ms(0)       # io and the uplink run between records
    if k < smp.held:
        smp.hold_dropped += smp.held - k        # torn or unreadable records
        smp.log("hold: %d of %d held samples unreadable" % (smp.held - k, smp.held))
    smp.held_stamped += k
    smp.held = 0
    h.remove()
    if k:
        smp.log("hold: %d samples stamped (%s) and journaled" % (k, SOURCE_NAMES[clk.source]))
    unload()


def lost_at_boot(smp):
    """At boot: samples a previous boot held and never stamped (it ended before any time
    source) cannot be stamped now: their ticks relate to no time. Count them, say so, remove
    the file."""
    h = Hold(smp.hold_path, 0)
    k = 0
    for _ in h.records():
        k += 1
    h.remove()
    if k:
        smp.log("hold: %d samples taken before any time source in the previous boot are lost: "
                "it ended before the clock was known (their ticks relate to no time now)" % k)
    unload()
    return k


def give_up(smp):
    """6 days without any time: the held samples' ages would pass what the clock can take."""
    if smp.held:
        smp.log("hold: no time source for %d days: %d held samples dropped"
                % (smp._mono // 86400000, smp.held))
    smp.hold_dropped += smp.held
    smp.held = 0
    if smp.hold is not None:
        smp.hold.remove()
    smp.hold = None
    smp._mono = 0
    unload()


def unload():
    """Drop this module from sys.modules (and its package): its bytecode goes with the last
    reference, as app._cold does for the config and status modules."""
    full = __name__
    sys.modules.pop(full, None)
    pkg = sys.modules.get(full[:full.rfind(".")])
    if pkg is not None and getattr(pkg, "hold", None) is not None:
        delattr(pkg, "hold")
