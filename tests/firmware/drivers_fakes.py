# Bus fakes for the driver tests under MicroPython (tests/firmware/test_drivers_*.py).
#
# They follow the machine API the drivers use (UART: any/readinto/write; I2C: writeto/
# readfrom_into) and allocate nothing after construction, so a driver's steady-state path can run
# against them inside micropython.heap_lock(). Replies are scripted by the test: `on_write` is
# called with every buffer the driver writes and may inject() bytes for the driver to read.


class FakeUART:
    def __init__(self, size=1024, chunk=1024):
        self._rx = bytearray(size)
        self._size = size
        self._head = 0
        self._count = 0
        self.chunk = chunk            # most bytes one readinto() returns (split frames)
        self.tx = bytearray(256)      # the last bytes written (ring)
        self.ntx = 0                  # total bytes written
        self.writes = 0
        self.on_write = None

    def inject(self, data, start=0, end=-1):
        if end < 0:
            end = len(data)
        for i in range(start, end):
            if self._count == self._size:
                return                 # overrun: the oldest unread byte is kept, the new dropped
            self._rx[(self._head + self._count) % self._size] = data[i]
            self._count += 1

    def any(self):
        return self._count

    def readinto(self, buf, nbytes=-1):
        if not self._count:
            return None
        n = len(buf) if nbytes < 0 else nbytes
        if n > self._count:
            n = self._count
        if n > self.chunk:
            n = self.chunk
        for i in range(n):
            buf[i] = self._rx[(self._head + i) % self._size]
        self._head = (self._head + n) % self._size
        self._count -= n
        return n

    def write(self, b):
        for i in range(len(b)):
            self.tx[(self.ntx + i) & 0xFF] = b[i]
        self.ntx += len(b)
        self.writes += 1
        if self.on_write is not None:
            self.on_write(b)
        return len(b)

    def last_written(self, n):
        """The last n written bytes (allocates; for assertions outside heap_lock)."""
        return bytes(self.tx[(self.ntx - n + i) & 0xFF] for i in range(n))

    def clear(self):
        self._head = 0
        self._count = 0


class FakeI2C:
    """One 7-bit address. `on_write(buf)` and `on_read(buf)` script the device; on_read returns
    False to NACK (raises OSError like machine.I2C)."""

    def __init__(self, addr):
        self.addr = addr
        self.on_write = None
        self.on_read = None
        self.writes = 0
        self.reads = 0
        self.nacks = 0
        self.last = bytearray(8)
        self.nlast = 0
        self._err = OSError(19)       # preallocated: raising it allocates nothing

    def writeto(self, addr, buf, stop=True):
        if addr != self.addr:
            self.nacks += 1
            raise self._err
        self.writes += 1
        n = len(buf)
        if n > 8:
            n = 8
        for i in range(n):
            self.last[i] = buf[i]
        self.nlast = n
        if self.on_write is not None:
            self.on_write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        if addr != self.addr or self.on_read is None or not self.on_read(buf):
            self.nacks += 1
            raise self._err
        self.reads += 1


class LCG:
    """Deterministic bytes for fuzzing (the same sequence on every run and interpreter)."""

    def __init__(self, seed=12345):
        self.s = seed

    def byte(self):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 16) & 0xFF

    def below(self, n):
        return self.byte() * n // 256

    def bytes(self, n):
        return bytes(self.byte() for _ in range(n))


def feed(drv, uart, data, now_ms, chunk=1024):
    """Inject data in pieces of `chunk` bytes, polling after each piece; return good frames."""
    got = 0
    for i in range(0, len(data), chunk):
        j = i + chunk
        if j > len(data):
            j = len(data)
        uart.inject(data, i, j)
        got += drv.poll(now_ms)
    got += drv.poll(now_ms)
    return got


def vectors(name):
    """tests/vectors/<name>.json (mptest.vectors finds the root through wire.json; this also
    works before that file exists)."""
    import sys
    import json
    for p in sys.path:
        for r in (p + "/../..", p):         # tests/firmware, or the repository root
            try:
                with open(r + "/tests/vectors/" + name + ".json") as f:
                    return json.load(f)
            except OSError:
                pass
    raise OSError("vectors %s not found" % name)


def unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))
