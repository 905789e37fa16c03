# Names the firmware takes from MicroPython, with CPython stand-ins so the same modules import on a
# host (the gateway, the Raspberry Pi board and the host tests use them there).
try:
    from time import ticks_ms, ticks_diff, ticks_add  # MicroPython
except ImportError:  # CPython
    import time as _time

    _PERIOD = 1 << 30

    def ticks_ms():
        return int(_time.monotonic() * 1000) & (_PERIOD - 1)  # pyright: ignore  (CPython's time)

    def ticks_diff(a, b):
        d = (a - b) & (_PERIOD - 1)
        return d - _PERIOD if d >= _PERIOD // 2 else d

    def ticks_add(a, b):
        return (a + b) & (_PERIOD - 1)
