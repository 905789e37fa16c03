# pyright: reportUndefinedVariable=false
# Freezes the box's firmware into a MicroPython image (a custom build: its bytecode then lives in
# flash, not in the heap; docs/firmware.md, "Memory"). micropython-lib's manifest format:
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC BOARD_VARIANT=SPIRAM FROZEN_MANIFEST=/path/to/envbox/firmware/manifest.py
#
# (rp2: make BOARD=RPI_PICO_W FROZEN_MANIFEST=...). The box then needs only /main.py, /board.py
# and /config.json on its filesystem (`envbox flash` writes them; the frozen package wins over a
# /lib copy because frozen modules come first on sys.path). Not built here: no ESP-IDF or
# Pico SDK on this machine; tests/test_romfs.py runs the equivalent ROMFS image instead.
#
# The packages freeze under the one name they have everywhere, envbox.firmware and envbox.boards:
# from build/mppath, the envbox/ tree over the sources that tools/mpybuild.py source_root() makes
# (run `.venv/bin/python -c "from envbox.mpybuild import source_root; source_root()"` first).

include("$(PORT_DIR)/boards/manifest.py")       # the port's own frozen modules (asyncio, ...)
freeze("../build/mppath", ("envbox/__init__.py", "envbox/boards/__init__.py",
                           "envbox/boards/buses.py"), opt=3)
package("envbox/firmware", base_path="../build/mppath", opt=3)
