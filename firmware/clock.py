# The box's UTC clock, disciplined by GNSS.
#
# Boards have a millisecond tick counter (time.ticks_ms on a device; a warped virtual tick on the
# `sim` board) but no trustworthy calendar time at power-on. UTC is learned from a valid GNSS fix
# (never from a receiver without a fix) and kept as an offset against the tick counter, so reading
# the clock allocates nothing: utc_ms = base_utc_ms + ticks_diff(now, base_tick).
# Times are seconds since 2020-01-01T00:00Z (wire.EPOCH_2020_UNIX_S): small integers on 32-bit
# MicroPython ports.

from .compat import ticks_diff

SOURCE_NONE = 0
SOURCE_GNSS = 1
SOURCE_NTP = 2


class Clock:
    def __init__(self, ticks_ms):
        self.ticks_ms = ticks_ms
        self.source = SOURCE_NONE
        self._base_tick = 0
        self._base_s = 0          # UTC seconds (since 2020) at _base_tick
        self.sets = 0
        self.last_step_ms = 0     # how far the last set moved the clock (drift/step diagnostics)

    def known(self):
        return self.source != SOURCE_NONE

    def set(self, t_s2020, tick_ms, source):
        """The UTC second t_s2020 began at tick_ms (e.g. the arrival of that second's RMC)."""
        if self.source != SOURCE_NONE:
            self.last_step_ms = (t_s2020 - self._base_s) * 1000 - ticks_diff(tick_ms,
                                                                              self._base_tick)
        self._base_tick = tick_ms
        self._base_s = t_s2020
        self.source = source
        self.sets += 1

    def now_ms_since(self, t_s2020, tick_ms=None):
        """Milliseconds elapsed since UTC second t_s2020 (negative if it is still ahead)."""
        if tick_ms is None:
            tick_ms = self.ticks_ms()
        return ticks_diff(tick_ms, self._base_tick) - (t_s2020 - self._base_s) * 1000

    def now_s(self, tick_ms=None):
        """Current UTC seconds since 2020 (floor)."""
        if tick_ms is None:
            tick_ms = self.ticks_ms()
        return self._base_s + ticks_diff(tick_ms, self._base_tick) // 1000
