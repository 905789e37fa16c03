"""Simulator models of the box's sensor modules: one module per part, named after the part.

Every model is a plain state machine driven by virtual time (seconds, float, Unix epoch). It
never sleeps, never starts threads and never touches a file descriptor: the simulator's servers
(simulator/pty.py for serial parts, simulator/i2c_bridge.py for I2C parts) own the threads and
call the model. That keeps models testable with bytes in, bytes out, and an explicit clock.

Serial model (subclass SerialModel):

    class Part(SerialModel):
        name = "part"                       # key in sim.json "serial"
        def start(self, t): ...             # power-on at virtual time t (schedule the first output)
        def receive(self, data, t): ...     # bytes the firmware wrote, arriving at virtual time t
        def tick(self, t): ...              # optional: queue periodic output due up to t (self.emit)
        def next_tick(self): ...            # optional: virtual time tick() next has work, or None

    The server calls start() once, receive() for every chunk read from the pty, and due(t) to get
    the bytes whose virtual time has come; it sleeps until next_due() or until input arrives.
    Output is queued with self.emit(t_virtual, data). Odd input must never raise: count it with
    self.count("name") (the counters dict goes into the run's status).

I2C model (subclass I2CModel), registered on the bridge by 7-bit address:

    class Part(I2CModel):
        def write(self, data, t) -> bool          # False = NACK
        def read(self, n, t) -> bytes or None     # None = NACK; otherwise exactly n bytes

Ground truth: a model gets `truth` (simulator.truth.GroundTruth or None) and calls
truth.record({"kind": name, ...}) for every reading it hands out, with the integers a perfect
decoder gets back from the bytes (docs/contracts.md, "Ground truth"); `name` is the part's name
in the registry (firmware/drivers/registry.py). TRUTH_TOLERANCE says how far, in wire units, a
stored channel may be from the truth's value: 0 where the wire carries the frame's integers, 1
where the driver rounds (tools/verify.py).

World: a model gets `world` (simulator.world.World) and asks world.channels_at_vehicle(t) for the
true values (keys as in firmware/wire.py CHANNELS: pm25_ugm3, no2_ppb, co_ppm, temp_c, ...).

Values are piecewise constant per 10 s slot: a model answering at virtual time t reports the
world at slot_of(t) (the nearest 10 s grid time), so the firmware's sample stamped T matches the
ground truth of slot T.
"""

import heapq
import math

SLOT_S = 10


def slot_of(t):
    """The 10 s grid time nearest to virtual time t (halves round up)."""
    return int(math.floor(t / SLOT_S + 0.5)) * SLOT_S


class SerialModel:
    name = "serial"
    TRUTH_TOLERANCE = 0

    def __init__(self):
        self.counters = {}
        self._queue = []   # heap of (t_virtual, n, bytes)
        self._n = 0

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def start(self, t):
        pass

    def receive(self, data, t):
        self.count("bytes_ignored", len(data))

    def tick(self, t):
        pass

    def next_tick(self):
        return None

    def emit(self, t, data):
        """Queue bytes to go out at virtual time t."""
        if data:
            self._n += 1
            heapq.heappush(self._queue, (t, self._n, bytes(data)))

    def cancel_output(self):
        """Drop everything queued (e.g. the module went to sleep)."""
        self._queue.clear()

    def due(self, t):
        """Bytes whose virtual time is <= t, in time order."""
        self.tick(t)
        out = []
        while self._queue and self._queue[0][0] <= t:
            out.append(heapq.heappop(self._queue)[2])
        return b"".join(out)

    def next_due(self):
        cands = [self._queue[0][0]] if self._queue else []
        nt = self.next_tick()
        if nt is not None:
            cands.append(nt)
        return min(cands) if cands else None


class I2CModel:
    name = "i2c"
    TRUTH_TOLERANCE = 0

    def __init__(self):
        self.counters = {}

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    def write(self, data, t):
        return True

    def read(self, n, t):
        return None
