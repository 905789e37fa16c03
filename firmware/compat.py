# Names the firmware takes from MicroPython, with stand-ins so the same modules run on a host (the
# gateway, the Raspberry Pi board and the host tests use them there).
#
# const: `from .compat import const` is the one import of it the firmware needs. MicroPython's
# compiler folds `_X = const(1)` by its name alone, wherever const came from; on CPython it is
# the identity.
#
# Tick arithmetic is the firmware's own, with the period of a 32-bit device (2^30 ms, 12.4 days),
# everywhere: MicroPython's time.ticks_diff uses the port's small-integer range as its period,
# which is 2^62 on the 64-bit Unix port the simulated box runs on. There, a tick counter that
# wraps at 2^30 as a device's does (the sim board's) read through time.ticks_diff made every
# driver warm up for ever once it wrapped. These stay small integers and allocate nothing.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms  # MicroPython
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore  (CPython's time)


def ticks_diff(a, b):
    """a - b in ms for two tick values of a 2^30 ms counter (signed, |a - b| < 2^29)."""
    d = (a - b) & 0x3FFFFFFF
    return d - 0x40000000 if d & 0x20000000 else d


def ticks_add(a, b):
    return (a + b) & 0x3FFFFFFF


_PKG = "envbox.firmware"    # one name on the box (/lib/envbox/firmware) and on a host


def cold(name):
    """Import a rarely used module of the firmware package (configuration, the status message,
    the channels' names, held samples) for one use: it is removed from sys.modules again, so its
    bytecode is garbage once the caller is done (on a device the module is read from flash again
    next time; every KB of a 111 KB heap counts)."""
    import sys
    full = _PKG + "." + name
    m = __import__(full, None, None, (name,))
    sys.modules.pop(full, None)
    pkg = sys.modules.get(_PKG)
    if pkg is not None and getattr(pkg, name, None) is m:
        delattr(pkg, name)      # the package keeps its submodules as attributes, too
    return m
