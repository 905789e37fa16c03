"""Virtual clock of a simulation run (docs/contracts.md, "Virtual clock and the simulator run file").

Virtual Unix time at wall time w (time.time()) is t0_virtual_s + (w - t0_wall_s) * warp. The
firmware on the `sim` board computes the same formula from sim.json, so both sides agree on
"now" without talking to each other. Virtual durations divided by warp give wall durations.
"""

import time


class VirtualClock:
    """Maps wall time to virtual Unix seconds.

    t0_virtual_s: virtual Unix seconds at the reference instant.
    warp: virtual seconds per wall second (60 = a virtual hour in a wall minute).
    t0_wall_s: wall time.time() of the reference instant; now if None.
    """

    def __init__(self, t0_virtual_s, warp, t0_wall_s=None):
        if not warp > 0:
            raise ValueError("warp must be > 0, got %r" % (warp,))
        self.t0_virtual_s = float(t0_virtual_s)
        self.warp = float(warp)
        self.t0_wall_s = time.time() if t0_wall_s is None else float(t0_wall_s)

    def now(self):
        """Virtual Unix seconds (float) now."""
        return self.virtual_at(time.time())

    def virtual_at(self, wall_s):
        return self.t0_virtual_s + (wall_s - self.t0_wall_s) * self.warp

    def wall_at(self, t_virtual):
        """Wall time.time() at which virtual time t_virtual is reached."""
        return self.t0_wall_s + (t_virtual - self.t0_virtual_s) / self.warp

    def wall_seconds(self, virtual_duration_s):
        """Wall seconds that a virtual duration takes."""
        return virtual_duration_s / self.warp

    def sleep_until(self, t_virtual, stop_event=None):
        """Block until virtual time t_virtual. Returns False if stop_event was set first."""
        while True:
            remaining_wall_s = self.wall_at(t_virtual) - time.time()
            if remaining_wall_s <= 0:
                return True
            if stop_event is None:
                time.sleep(remaining_wall_s)
            elif stop_event.wait(remaining_wall_s):
                return False

    def to_json(self):
        return {"t0_wall_s": self.t0_wall_s, "t0_virtual_s": self.t0_virtual_s, "warp": self.warp}
