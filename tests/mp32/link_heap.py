# What the network supervisor of each board adds to the box's heap, on the 32-bit build: the
# modules' bytecode and tables (firmware/link.py, linkcell.py + drivers/simcom.py for the LTE
# board, linkwifi.py for the Pico W). The sim and Raspberry Pi boards use the base link only.
# Prints heap_bytes_32bit_link_<which> for `link_heap.py base|cell|wifi` (one per process, so
# nothing of another lingers). Used by benchmarks/firmware_footprint.py.
import gc
import sys

import asyncio


async def _mem():
    for _ in range(2):
        await asyncio.sleep_ms(1)
        gc.collect()
    return gc.mem_alloc()


async def main():
    import socket  # noqa: F401 - (this build has none: tests/mp32/stand_ins/, in the baseline)
    import envbox.firmware  # noqa: F401 - the package itself, in the baseline
    import envbox.firmware.compat  # noqa: F401
    base = await _mem()
    which = sys.argv[1] if len(sys.argv) > 1 else "base"
    import envbox.firmware.link  # noqa: F401
    if which == "cell":
        import envbox.firmware.drivers.simcom  # noqa: F401
        import envbox.firmware.linkcell  # noqa: F401
    elif which == "wifi":
        import envbox.firmware.linkwifi  # noqa: F401
    print("heap_bytes_32bit_link_%s=%d" % (which, await _mem() - base))


if hasattr(asyncio, "run"):
    asyncio.run(main())
else:
    __mp32_main__ = main
