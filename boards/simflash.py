# The `sim` board's flash chip: NOR flash emulated on a file (or RAM), with partitions that behave
# like esp32.Partition / rp2.Flash (MicroPython's extended block-device protocol), so the box's
# state runs on littlefs (vfs.VfsLfs2) and the journal on a raw partition, with device semantics:
#
#   - erase sets a 4 KiB sector to 0xFF; programming can only clear bits: a write over bytes that
#     are not erased raises OSError(EIO) instead of silently AND-ing (it would be a firmware bug);
#   - the file survives a SIGKILL and a restart of the firmware, as flash survives a power cut;
#   - every program and erase is counted (bytes programmed, erases), for the wear figures;
#   - power cut: with cut_at=N the N-th program or erase of this process (1-based) is cut: a
#     program writes only the first `torn` bytes of its buffer (0 = nothing), an erase does
#     nothing, and the process is killed at once with SIGKILL (os.system: the shell's parent is the
#     firmware), as a power cut would stop the box. With kill=False (unit tests in one process)
#     the flash goes dead instead: that operation and every later one raise OSError(EIO) until
#     revive().
#
# Layouts (docs/firmware.md, "Flash"):
#   esp32  4 MB chip, the project's partition table: app, "vfs" littlefs 512 KiB, "journal" raw
#          1.5 MiB (a stock table has no raw partition: `envbox flash` writes this one)
#   pico_w the RP2040's 848 KiB littlefs filesystem, nothing raw (the stock image's layout); the
#          journal lives in littlefs files. The firmware's files take about 184 KiB there: the
#          board fills that much with a placeholder, so what is left is what a real Pico W has.

import os

from envbox.firmware.compat import const

_SECTOR = const(4096)
_CHUNK = const(64)


class NorFlash:
    """A whole flash chip. `path`: a file (created erased, 0xFF, when missing or of another size);
    None: RAM only (unit tests)."""

    def __init__(self, path, size, cut_at=0, torn=0, kill=True, _from=None):
        if _from is not None:           # reborn(): the same storage, a new life
            for k in ("size", "kill", "path", "programmed", "erases", "ops", "torn", "_ff",
                      "_ram", "_f"):
                setattr(self, k, getattr(_from, k))
            self.dead = False
            self.zombie = False
            self.cut_at = 0
            self._scratch = bytearray(_CHUNK)
            return
        self.size = size
        self.kill = kill
        self.dead = False
        self.zombie = False
        self.path = path
        self.programmed = 0      # bytes programmed by this process
        self.erases = 0          # sectors erased by this process
        self.ops = 0             # programs + erases by this process
        self.cut_at = cut_at
        self.torn = torn
        self._scratch = bytearray(_CHUNK)
        self._ff = b"\xff" * _CHUNK
        if path is None:
            self._ram = bytearray(b"\xff" * size)
            self._f = None
        else:
            self._ram = None
            try:
                st = os.stat(path)[6]
            except OSError:
                st = -1
            if st != size:
                with open(path, "wb") as f:
                    for _ in range(size // _CHUNK):
                        f.write(self._ff)
            self._f = open(path, "r+b")

    # -- raw access (byte addresses)
    def read(self, addr, buf):
        if self.zombie:
            for i in range(len(buf)):
                buf[i] = 0xFF
            return
        if self.dead:
            raise OSError(5)
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise OSError(22)
        if self._f is None:
            mv = memoryview(self._ram)
            buf[:] = mv[addr:addr + n]
        else:
            self._f.seek(addr)
            got = self._f.readinto(buf)
            if got != n:
                raise OSError(5)

    def _cut(self):
        if self.dead:
            raise OSError(5)
        self.ops += 1
        return self.cut_at and self.ops >= self.cut_at

    def _die(self):
        if not self.kill:
            self.dead = True
            raise OSError(5)
        try:
            if self._f is not None:
                self._f.flush()
        finally:
            os.system("kill -KILL $PPID")   # the shell's parent: this interpreter
            raise SystemExit(137)           # (only if the kill could not be run)

    def reborn(self):
        """Power back (kill=False): a new NorFlash on the same storage, for a new mount. This
        one stays dead, so objects of the old boot (a littlefs file a finalizer closes later)
        can never write again, as RAM state cannot outlive a real power cut."""
        n = NorFlash(None, 0, _from=self)
        self.zombie = True      # reads 0xFF, writes nothing, never raises (finalizers of files
        return n                # of the past boot may run at any time, even in heap_lock)

    def program(self, addr, buf):
        if self.zombie:
            return
        if self.dead:
            raise OSError(5)
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise OSError(22)
        # NOR: only erased bytes may be programmed (checked in small chunks: no big buffer;
        # an erased chunk, the usual case, is one comparison)
        s = self._scratch
        ff = self._ff
        k = 0
        while k < n:
            m = n - k if n - k < _CHUNK else _CHUNK
            v = memoryview(s)[:m]
            self.read(addr + k, v)
            if v != memoryview(ff)[:m]:
                for i in range(m):
                    if s[i] != 0xFF and (s[i] & buf[k + i]) != buf[k + i]:
                        raise OSError(5)    # programming a 0 back to 1 needs an erase first
            k += m
        if self._cut():
            n = self.torn if self.torn < n else n
            if n:
                self._write(addr, memoryview(buf)[:n])
            self._die()
        self._write(addr, buf)
        self.programmed += n

    def erase(self, addr):
        if self.zombie:
            return
        if self.dead:
            raise OSError(5)
        if addr % _SECTOR or addr < 0 or addr + _SECTOR > self.size:
            raise OSError(22)
        if self._cut():
            self._die()
        for k in range(0, _SECTOR, _CHUNK):
            self._write(addr + k, self._ff)
        self.erases += 1

    def _write(self, addr, buf):
        if self._f is None:
            self._ram[addr:addr + len(buf)] = buf
        else:
            self._f.seek(addr)
            self._f.write(buf)


class Partition:
    """A region of a NorFlash as MicroPython's extended block device (like esp32.Partition:
    4096-byte blocks; readblocks/writeblocks with an offset never erase; ioctl 6 erases)."""

    def __init__(self, flash, start, size, label=""):
        if start % _SECTOR or size % _SECTOR:
            raise ValueError("partition not sector aligned")
        self.flash = flash
        self.start = start
        self.size = size
        self.label = label

    def readblocks(self, block, buf, offset=0):
        self.flash.read(self.start + block * _SECTOR + offset, buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # the simple protocol: erase the blocks, then write whole blocks
            for k in range(len(buf) // _SECTOR):
                self.flash.erase(self.start + (block + k) * _SECTOR)
            offset = 0
        self.flash.program(self.start + block * _SECTOR + offset, buf)

    def ioctl(self, op, arg):
        if op == 4:        # block count
            return self.size // _SECTOR
        if op == 5:        # block size
            return _SECTOR
        if op == 6:        # erase a block
            self.flash.erase(self.start + arg * _SECTOR)
            return 0
        if op in (1, 2, 3):
            return 0
        return None


# name -> (chip size, [(label, start, size, kind)]); kind "lfs" (littlefs, mounted at the state
# directory), "raw" (the journal ring), "image" (the firmware: not modelled)
LAYOUTS = {
    "esp32": (4 * 1024 * 1024, [("factory", 0x10000, 0x1F0000, "image"),
                                ("vfs", 0x200000, 0x80000, "lfs"),
                                ("journal", 0x280000, 0x180000, "raw")]),
    "pico_w": (848 * 1024, [("vfs", 0, 848 * 1024, "lfs")]),
}
# what the firmware's own files take on a Pico W's filesystem (.mpy files, boot.py, board.py)
FIRMWARE_FILES_BYTES = 184 * 1024
