"""What `envbox flash` does to a board besides copying the image (tools/provision.py):

- **the MicroPython image itself** (`--micropython FILE`): a file the technician downloaded from
  MicroPython's download page. It must be the fleet's pinned image (`envbox provision --image
  BOARD=FILE` records its sha256 in the fleet's images.json); any other file is refused before
  anything touches the board. ESP32: the `.bin` written with esptool at 0x1000; Pico W: the
  `.uf2` copied onto the RPI-RP2 drive the RP2040's boot ROM shows in BOOTSEL mode.
- **the board's MicroPython, checked before copying**: one `mpremote exec` prints its version,
  platform, `.mpy` ABI (sys.implementation._mpy) and the files the image manages; the copy is
  refused when the board cannot load the image's bytecode (another .mpy major version, a small
  int wider than the port's), runs another port than the board file is for, or a MicroPython
  older than MIN_MICROPYTHON.
- **files the image no longer has** are removed (only under /lib/envbox, an older image's
  /lib/firmware and /lib/boards, and the image's top-level files: never /data, where the journal
  and state live).

Nothing here needs a device to be tested: the probe script runs under the Unix port over a staged
image, the commands are built and checked (esptool's own parser reads the esptool command),
the UF2 copy goes to a directory that looks like the boot ROM's drive (tests/test_flash_board.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import sys
import time
from pathlib import Path

MIN_MICROPYTHON = (1, 24, 0)        # network.PPP, ssl.SSLContext, asyncio as the firmware uses
PLATFORMS = {"esp32_lte": "esp32", "pico_w": "rp2"}
ESP32_APP_OFFSET = 0x1000           # the ESP32's bootloader offset (the image starts there)
ESP32_CHIP_ID = 0                   # esp_image_header_t.chip_id: 0 = ESP32 (S2 2, C3 5, S3 9)
UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FAMILY_RP2040 = 0xE48BFF56
UF2_FLAG_FAMILY = 0x00002000
# what the image owns on the board's filesystem: these go, when the new image lacks them
# (/lib/firmware and /lib/boards: where images before the one-name layout put the packages, so
# flashing a box of that age removes them)
MANAGED_DIRS = ("/lib/envbox", "/lib/firmware", "/lib/boards")
MANAGED_FILES = ("/main.py", "/board.mpy", "/board.py", "/config.json", "/safe_mode")
PROBE_TAG = "ENVBOX-PROBE "


class FlashError(Exception):
    pass


# ---- the MicroPython image file ------------------------------------------------------------------

def micropython_version_of(name: str) -> str | None:
    """"1.25.0" from a download's name (ESP32_GENERIC-SPIRAM-20250415-v1.25.0.bin)."""
    m = re.search(r"v(\d+\.\d+(?:\.\d+)?)", name)
    return m.group(1) if m else None


def check_image_format(board: str, name: str, data: bytes) -> None:
    """Refuse a file that is not a MicroPython image for this board's chip."""
    if board == "esp32_lte":
        if not name.endswith(".bin") or len(data) < 24 or data[0] != 0xE9:
            raise FlashError(f"{name}: not an ESP32 firmware image (.bin starting with 0xE9)")
        chip = struct.unpack_from("<H", data, 12)[0]
        if chip != ESP32_CHIP_ID:
            raise FlashError(f"{name}: an image for chip id {chip}, not the ESP32 (0): "
                             "download the ESP32_GENERIC(-SPIRAM) image")
    elif board == "pico_w":
        if not name.endswith(".uf2") or len(data) < 512 or len(data) % 512:
            raise FlashError(f"{name}: not a UF2 file (512-byte blocks)")
        for off in range(0, len(data), 512):
            m0, m1, flags = struct.unpack_from("<III", data, off)
            fam = struct.unpack_from("<I", data, off + 28)[0]
            end = struct.unpack_from("<I", data, off + 508)[0]
            if (m0, m1, end) != (UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END):
                raise FlashError(f"{name}: block {off // 512} is not a UF2 block")
            if not flags & UF2_FLAG_FAMILY or fam != UF2_FAMILY_RP2040:
                raise FlashError(f"{name}: block {off // 512} is not for the RP2040 "
                                 f"(family 0x{fam:08x}): download the RPI_PICO_W image")
    else:
        raise FlashError(f"{board}: no MicroPython image to write")


def check_pinned(board: str, path: Path, pins: dict) -> bytes:
    """The image's bytes, if it is the fleet's pinned image for `board`; else FlashError."""
    pin = pins.get(board)
    if pin is None:
        raise FlashError(f"no MicroPython image pinned for {board}: pin the one you downloaded "
                         f"once with `envbox provision --fleet DIR --image {board}=FILE`")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FlashError(f"{path}: {e}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != pin["sha256"]:
        raise FlashError(f"{path.name}: sha256 {got} is not the pinned {pin['sha256']} "
                         f"({pin['file']}): refusing to write it")
    check_image_format(board, path.name, data)
    return data


def esptool_exe() -> str | None:
    for cand in (os.path.join(os.path.dirname(sys.executable), "esptool"),
                 os.path.join(os.path.dirname(sys.executable), "esptool.py")):
        if os.path.exists(cand):
            return cand
    return shutil.which("esptool") or shutil.which("esptool.py")


def esptool_commands(exe: str, port: str, image: Path, erase: bool = False,
                     baud: int = 460800) -> list[list[str]]:
    """The esptool runs that write a MicroPython image to an ESP32 (MicroPython's ESP32
    instructions): optionally erase the whole flash first (a new box: also its filesystem and
    journal), then the image at 0x1000."""
    base = [exe, "--chip", "esp32", "--port", port, "--baud", str(baud)]
    cmds = []
    if erase:
        cmds.append(base + ["erase_flash"])
    cmds.append(base + ["write_flash", "-z", hex(ESP32_APP_OFFSET), str(image)])
    return cmds


def find_uf2_drive(candidates=None) -> Path | None:
    """The RP2040 boot ROM's drive (a FAT volume named RPI-RP2 with INFO_UF2.TXT)."""
    if candidates is None:
        user = os.environ.get("SUDO_USER") or os.environ.get("USER") or ""
        candidates = [Path("/media") / user / "RPI-RP2", Path("/run/media") / user / "RPI-RP2",
                      Path("/media/RPI-RP2"), Path("/mnt/RPI-RP2")]
    for c in candidates:
        if is_uf2_drive(Path(c)):
            return Path(c)
    return None


def is_uf2_drive(d: Path) -> bool:
    try:
        info = (d / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return False
    return "RPI-RP2" in info


def copy_uf2(data: bytes, name: str, drive: Path) -> Path:
    """Copy the image onto the boot ROM's drive; the RP2040 writes it and reboots."""
    if not is_uf2_drive(drive):
        raise FlashError(f"{drive}: not an RPI-RP2 boot drive (hold BOOTSEL while plugging "
                         "the Pico W in)")
    dst = drive / name
    with open(dst, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return dst


def wait_for(cond, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise FlashError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


# ---- the board's MicroPython, through mpremote ---------------------------------------------------

def probe_script(root: str = "") -> str:
    """MicroPython code that prints one PROBE_TAG line of JSON: version, platform, .mpy ABI and
    the managed files with their sizes. `root` prefixes every path (tests run it under the Unix
    port over a directory; on a board it is empty)."""
    return f"""import sys, os, json
R = {root!r}
def walk(d, out):
    try:
        it = list(os.ilistdir(R + d))
    except OSError:
        return
    for e in it:
        p = d + "/" + e[0]
        if e[1] == 0x4000:
            walk(p, out)
        else:
            out.append([p, e[3] if len(e) > 3 else -1])
files = []
for d in {MANAGED_DIRS!r}:
    walk(d, files)
for f in {MANAGED_FILES!r}:
    try:
        files.append([f, os.stat(R + f)[6]])
    except OSError:
        pass
si = sys.implementation
print({PROBE_TAG!r} + json.dumps({{"version": list(si.version[:3]),
      "mpy": getattr(si, "_mpy", 0), "platform": sys.platform,
      "machine": getattr(si, "_machine", ""), "files": files}}))
"""


def parse_probe(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith(PROBE_TAG):
            try:
                return json.loads(line[len(PROBE_TAG):])
            except ValueError:
                break
    raise FlashError("the board did not answer the probe (is it running MicroPython, and "
                     "free? `envbox flash --safe-mode` or hold the safe-mode button): "
                     + out.strip()[-300:])


def mpy_header(path: Path) -> tuple[int, int, int]:
    """(.mpy major version, feature flags, small-int bits) of a compiled file."""
    h = path.read_bytes()[:4]
    if len(h) < 4 or h[0] != ord("M"):
        raise FlashError(f"{path}: not a .mpy file")
    return h[1], h[2], h[3]


def check_board(board: str, probe: dict, mpy: tuple[int, int, int],
                pinned_version: str | None = None) -> list[str]:
    """Refuse (FlashError) a board that cannot run the image; return warnings."""
    warn = []
    want = PLATFORMS.get(board)
    if want and probe.get("platform") != want:
        raise FlashError(f"the board runs MicroPython for {probe.get('platform')!r}, the image "
                         f"is for {board} ({want}): wrong board on this port?")
    v = tuple(probe.get("version") or (0, 0, 0))
    vs = ".".join(map(str, v))
    if v < MIN_MICROPYTHON:
        raise FlashError(f"the board runs MicroPython {vs}; the firmware needs "
                         f"{'.'.join(map(str, MIN_MICROPYTHON))} or later "
                         f"(write the fleet's image with --micropython FILE)")
    if pinned_version and vs != pinned_version and vs + ".0" != pinned_version \
            and vs != pinned_version + ".0":
        raise FlashError(f"the board runs MicroPython {vs}, the fleet's pinned image is "
                         f"{pinned_version}: write it with --micropython FILE")
    if not pinned_version:
        warn.append(f"no MicroPython image pinned for {board}; the board runs {vs}")
    board_mpy = int(probe.get("mpy") or 0)
    major, _flags, small_int_bits = mpy
    if board_mpy & 0xFF != major:
        raise FlashError(f"the board loads .mpy version {board_mpy & 0xFF}, the image is "
                         f"version {major} (another mpy-cross than this MicroPython's)")
    # a bytecode-only .mpy loads on any sub-version and architecture; its small ints must fit
    # the port's: 31 bits on the 32-bit ESP32 and RP2040
    if small_int_bits > 31:
        raise FlashError(f"the image's small ints are {small_int_bits} bits; the board's 31")
    return warn


def stale_files(board_files: list, image_files: set[str]) -> list[str]:
    """Managed files on the board that the new image does not have (never outside
    MANAGED_DIRS/MANAGED_FILES: /data holds the journal)."""
    out = []
    for p, _size in board_files:
        managed = p in MANAGED_FILES or any(p.startswith(d + "/") for d in MANAGED_DIRS)
        if managed and p not in image_files:
            out.append(p)
    return sorted(out)
