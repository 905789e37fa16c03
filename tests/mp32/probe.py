# What the 32-bit lane runs on: the width of a small integer, and whether heap_lock works.
import micropython
import sys

bits = 0
v = 1
micropython.heap_lock()
try:
    while bits < 70:
        v = v + v       # the first doubling past the small-int range needs the heap
        bits += 1
except MemoryError:
    pass
micropython.heap_unlock()
# the largest power of two that fits is 2^bits: bits value bits plus one, and a sign bit
print("small_int_bits=%d" % (bits + 2))
print("heap_lock=%s" % ("yes" if bits < 70 else "no"))
print("platform=%s %s" % (sys.platform, sys.implementation._machine))
