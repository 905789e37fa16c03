# Minimal test runner for firmware tests executed by the MicroPython interpreter.
#
# A firmware test file defines functions named test_*; it ends with
#     import mptest; mptest.main(globals())
# tests/test_firmware_mp.py runs every tests/firmware/test_*.py under `micropython` (with the
# firmware as envbox.firmware (tools/mpybuild.py source_root) and tests/firmware on sys.path) and
# fails when the process does not print "MPTEST OK" as its last line. Vectors:
# mptest.vectors("pms5003") reads tests/vectors/pms5003.json (found through tests/firmware).
import sys
import json

ROOT = None


def _root():
    global ROOT
    if ROOT is None:
        for p in sys.path:
            for r in (p + "/../..", p):     # tests/firmware, or the repository root
                try:
                    open(r + "/tests/vectors/wire.json").close()
                    ROOT = r
                    return ROOT
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


def _is_gen(x):
    return hasattr(x, "send") and hasattr(x, "throw")


_state = {}


def main(g):
    """Run every test_* function of the module. A test that is a coroutine (async def) runs on
    asyncio: asyncio.run under the Unix port; on the 32-bit WebAssembly build (no asyncio.run,
    its loop is JavaScript's) tests/mp32/run.mjs awaits finish_async() after this returns."""
    names = sorted(k for k in g if k.startswith("test_") and callable(g[k]))
    only = None
    if len(sys.argv) > 1:
        only = sys.argv[1]
    st = {"failed": 0, "ran": 0, "pending": []}
    for n in names:
        if only and only not in n:
            continue
        st["ran"] += 1
        try:
            r = g[n]()
            if _is_gen(r):
                st["pending"].append((n, r))
                continue
            print("PASS", n)
        except Exception as e:  # noqa: BLE001
            _fail(st, n, e)
    _state.update(st)
    if st["pending"]:
        import asyncio
        if not hasattr(asyncio, "run"):
            return          # run.mjs calls finish_async()
        if not asyncio.run(finish_async()):
            sys.exit(1)
        return
    if not _summary():
        sys.exit(1)


def _fail(st, n, e):
    st["failed"] += 1
    print("FAIL", n)
    sys.print_exception(e) if hasattr(sys, "print_exception") else print(repr(e))


async def finish_async():
    st = _state
    for n, coro in st["pending"]:
        try:
            await coro
            print("PASS", n)
        except Exception as e:  # noqa: BLE001
            _fail(st, n, e)
    st["pending"] = []
    return _summary()


def pending():
    return bool(_state.get("pending"))


def _summary():
    st = _state
    print("%d passed, %d failed" % (st["ran"] - st["failed"], st["failed"]))
    if st["failed"] or not st["ran"]:
        return False
    print("MPTEST OK")
    return True
