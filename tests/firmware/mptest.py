# Minimal test runner for firmware tests executed by the MicroPython interpreter.
#
# A firmware test file defines functions named test_*; it ends with
#     import mptest; mptest.main(globals())
# tests/test_firmware_mp.py runs every tests/firmware/test_*.py under `micropython` (with the
# repository root and tests/firmware on sys.path) and fails when the process does not print
# "MPTEST OK" as its last line. Vectors: mptest.vectors("pms5003") reads tests/vectors/pms5003.json.
import sys
import json

ROOT = None


def _root():
    global ROOT
    if ROOT is None:
        for p in sys.path:
            try:
                open(p + "/tests/vectors/wire.json").close()
                ROOT = p
                break
            except OSError:
                pass
    return ROOT


def vectors(name):
    with open(_root() + "/tests/vectors/" + name + ".json") as f:
        return json.load(f)


def unhex(s):
    s = s.replace(" ", "").replace("\n", "")
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


_lcg = [20240917]


def rand_bytes(n):
    """Pseudo-random bytes, the same sequence on every interpreter and run (fuzzing inputs; the
    32-bit WebAssembly build has no os.urandom)."""
    out = bytearray(n)
    s = _lcg[0]
    for i in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (s >> 16) & 0xFF
    _lcg[0] = s
    return bytes(out)


class Fail(Exception):
    pass


def eq(a, b, msg=""):
    if a != b:
        raise Fail("%r != %r %s" % (a, b, msg))


def true(x, msg=""):
    if not x:
        raise Fail("not true: %s" % msg)


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise Fail("%s not raised by %r" % (exc, fn))


def main(g):
    names = sorted(k for k in g if k.startswith("test_") and callable(g[k]))
    only = None
    if len(sys.argv) > 1:
        only = sys.argv[1]
    failed = 0
    ran = 0
    for n in names:
        if only and only not in n:
            continue
        ran += 1
        try:
            g[n]()
            print("PASS", n)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL", n)
            sys.print_exception(e) if hasattr(sys, "print_exception") else print(repr(e))
    print("%d passed, %d failed" % (ran - failed, failed))
    if failed or not ran:
        sys.exit(1)
    print("MPTEST OK")
