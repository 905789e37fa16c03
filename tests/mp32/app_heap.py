# The box's heap, measured where it is as on a device: under the official 32-bit MicroPython
# build (tests/mp32/run.mjs), the real app on the fake board of tests/firmware/appfakes.py (the
# kit's real drivers on scripted buses, a raw journal partition, an MQTT client that counts). It
# takes samples, sends them live, builds and sends a catch-up batch, receives an acknowledgement
# and builds a status message; after each step it collects and reads gc.mem_alloc().
#
# What the fakes themselves hold (the buses' buffers, the 32 KiB RAM "flash", the test modules)
# is measured first and subtracted: on a device those are C drivers and flash, outside the heap.
# Prints `<kit>_<step>=N` per step and `peak_heap_bytes_<kit>=N`, the largest of them.
#
#   node tests/mp32/run.mjs tests/mp32/app_heap.py full|pm-gnss
import gc
import sys

import asyncio
import json      # noqa: F401 - the app's own imports, in the baseline of both
import struct    # noqa: F401

KIT = sys.argv[1] if len(sys.argv) > 1 else "pm-gnss"
_steps = []
_base = [0]


async def _mem():
    # The WebAssembly build frees what only its C stack still pointed to once control is back
    # in JavaScript: yield to the event loop before collecting (the Unix port does not need it)
    for _ in range(2):
        await asyncio.sleep_ms(1)
        gc.collect()
    return gc.mem_alloc()


async def _mark(name):
    _steps.append((name, await _mem() - _base[0]))


T0 = 218000000


async def main():
    import appfakes
    sc = appfakes.Script(record=False)
    buses = appfakes.kit_buses(KIT)
    part = appfakes.RamPartition(8)
    _base[0] = await _mem()           # the interpreter and the fakes: not the box's
    from envbox.firmware import app as A
    from envbox.firmware import mqtt  # noqa: F401 - a box loads it for its client (the fake here)
    from envbox.firmware.clock import SOURCE_GNSS
    await _mark("modules")
    b = appfakes.FakeBoard(KIT, buses=buses, partition=part, state_dir="/tmp/envbox-heap")
    await _mark("board")
    a = A.App(b, client_factory=sc.factory)
    await _mark("app")
    a.clock.set(T0, b.ticks_ms(), SOURCE_GNSS)
    io = asyncio.create_task(a.sampler.io_task())
    # samples while offline: a backlog for the catch-up batch
    for k in range(40):
        b.gnss_uart.inject(appfakes.nmea_second(T0 + 10 * k))
        await a.sampler._take(T0 + 10 * k)
    await _mark("sampling")
    up = asyncio.create_task(a.uplink.run())
    for _ in range(400):
        if a.uplink.batch_samples + a.uplink.live_sent >= 40:
            break
        await asyncio.sleep_ms(5)
    await _mark("live_and_batch")
    sc.client.deliver(b"envbox/v1/sj-001/ack/gw", b"\x03\x01\x00\x27")   # seqs 0..39
    await _mark("ack")
    n = len(a.status_json())     # (built and dropped, as the uplink does after sending it)
    await _mark("status")
    if a.journal.depth() or not a.uplink.batches or n < 100:
        raise SystemExit("the scenario did not run: depth %d batches %d"
                         % (a.journal.depth(), a.uplink.batches))
    up.cancel()
    io.cancel()
    k = KIT.replace("-", "_")
    for name, v in _steps:
        print("%s_%s=%d" % (k, name, v))
    print("peak_heap_bytes_%s=%d" % (k, max(v for _, v in _steps)))


if hasattr(asyncio, "run"):
    asyncio.run(main())
else:
    __mp32_main__ = main      # run.mjs awaits it on this build's asyncio
