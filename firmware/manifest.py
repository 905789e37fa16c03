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

include("$(PORT_DIR)/boards/manifest.py")       # the port's own frozen modules (asyncio, ...)
package("firmware", base_path="..", opt=3)
package("boards", files=("__init__.py", "buses.py"), base_path="..", opt=3)
