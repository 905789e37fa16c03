# The box's UTC clock, from every time source it has, trusted in order.
#
# Boards have a millisecond tick counter (time.ticks_ms on a device; a warped virtual tick on the
# `sim` board) but no trustworthy calendar time at power-on. UTC is learned from a source and
# kept as an offset against the tick counter, so reading the clock allocates nothing:
# utc_ms = base_utc_ms + ticks_diff(now, base_tick). The sources, most trusted first:
#
#   GNSS      a valid fix (never a receiver without one): the second of the fix began when its
#             sentences arrived; every fix sets the clock again
#   network   the link's time (firmware/link.py time_s2020()): SNTP on the host and Wi-Fi links,
#             the LTE modem's clock (AT+CCLK?, the operator's NITZ) on the LTE link
#   RTC       the board's real-time clock, read once at boot: it keeps counting across a watchdog
#             or soft reset (ESP32), not across a power cut (then it reads its epoch and is not
#             believed)
#
# A source sets the clock when it is trusted at least as much as the one in force, or when the one
# in force has not set it for `stale_s` (a vehicle parked for a day out of the sky: the network's
# time then beats a day of tick drift). docs/firmware.md, "Clock".
# Times are seconds since 2020-01-01T00:00Z (wire.EPOCH_2020_UNIX_S): small integers on 32-bit
# MicroPython ports.

from .compat import ticks_diff

SOURCE_NONE = 0
SOURCE_GNSS = 1
SOURCE_NTP = 2       # the network's time: SNTP or the modem's clock
SOURCE_RTC = 3
SOURCE_NAMES = ("none", "gnss", "network", "rtc")
_RANK = (0, 3, 2, 1)          # trust, by source
_KEEP_MS = 86400000           # move the base forward once a day (tick differences stay < 2^29)


class Clock:
    def __init__(self, ticks_ms, stale_s=6 * 3600):
        self.ticks_ms = ticks_ms
        self.source = SOURCE_NONE
        self.stale_s = stale_s
        self._base_tick = 0
        self._base_s = 0          # UTC seconds (since 2020) at _base_tick
        self._set_s = 0           # the clock's time at the last set (staleness of its source)
        self.last_step_ms = 0     # how far the last set moved the clock (drift/step diagnostics)
        self.first_source = SOURCE_NONE   # the source that made the clock known, and when (tick)
        self.first_tick = 0

    def known(self):
        return self.source != SOURCE_NONE

    def set(self, t_s2020, tick_ms, source):
        """The UTC second t_s2020 began at tick_ms (e.g. the arrival of that second's RMC), says
        `source`. Taken when the source is trusted at least as much as the one in force, or that
        one has not set the clock for stale_s; True when it was."""
        cur = self.source
        if cur != SOURCE_NONE:
            if _RANK[source] < _RANK[cur] and self.now_s() - self._set_s < self.stale_s:
                return False
            self.last_step_ms = (t_s2020 - self._base_s) * 1000 - ticks_diff(tick_ms,
                                                                              self._base_tick)
        else:
            self.first_source = source
            self.first_tick = tick_ms
        self._base_tick = tick_ms
        self._base_s = t_s2020
        self._set_s = t_s2020
        self.source = source
        return True

    def keep(self, tick_ms):
        """Called often (the io loop): moves the base forward, the same instant, once a day, so a
        clock no source has set for days still reads right (tick differences stay small)."""
        if self.source != SOURCE_NONE and ticks_diff(tick_ms, self._base_tick) > _KEEP_MS:
            self._base_s += _KEEP_MS // 1000
            self._base_tick = (self._base_tick + _KEEP_MS) & 0x3FFFFFFF

    def now_ms_since(self, t_s2020, tick_ms=None):
        """Milliseconds elapsed since UTC second t_s2020 (negative if it is still ahead)."""
        if tick_ms is None:
            tick_ms = self.ticks_ms()
        return ticks_diff(tick_ms, self._base_tick) - (t_s2020 - self._base_s) * 1000

    def now_s(self, tick_ms=None, ago_ms=0):
        """UTC seconds since 2020 (floor) at tick_ms (default: now), or ago_ms before it (held
        samples are stamped so)."""
        if tick_ms is None:
            tick_ms = self.ticks_ms()
        return self._base_s + (ticks_diff(tick_ms, self._base_tick) - ago_ms) // 1000
