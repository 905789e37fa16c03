# Flash wear of the box's journal, measured on the sim board's emulated NOR flash
# (boards/simflash.py counts every byte programmed and every 4 KiB sector erased), under the
# MicroPython Unix port. benchmarks/firmware_footprint.py runs it; it prints key=value lines.
#
# The traffic is a box's: one full-kit record a sample (PAYLOAD bytes), a gateway acknowledging
# every 16 samples, the state file rewritten as the app does (at boot only: nothing per sample).
# Two stores, as the boards use them:
#   ring      the record ring on the ESP32 layout's raw 1.5 MiB "journal" partition
#   littlefs  segment files on the Pico W's 848 KiB littlefs (the firmware's files in it too)
#
#   micropython -X heapsize=8m benchmarks/mp_flash_wear.py [RECORDS] [PAYLOAD]
import sys

import vfs

from envbox.boards.simflash import FIRMWARE_FILES_BYTES, LAYOUTS, NorFlash, Partition
from envbox.firmware.journal_files import FileJournal
from envbox.firmware.journal_ring import RingJournal

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
PAYLOAD = int(sys.argv[2]) if len(sys.argv) > 2 else 93
PER_DAY = 8640          # samples a day at 10 s


def run(journal, flash):
    buf = bytearray(PAYLOAD)
    flash.programmed = flash.erases = 0
    for i in range(N):
        for k in range(PAYLOAD):
            buf[k] = (i + k) & 0xFF
        journal.append(buf, PAYLOAD)
        if i % 16 == 15:
            journal.ack(i - 15, i + 1)
    return flash.programmed, flash.erases


def main():
    rec = 12 + PAYLOAD
    # ring on the ESP32 layout's journal partition
    size, parts = LAYOUTS["esp32"]
    start, psize = [(p[1], p[2]) for p in parts if p[0] == "journal"][0]
    fl = NorFlash(None, psize)
    ring = RingJournal(Partition(fl, 0, psize)).open()
    prog, er = run(ring, fl)
    print("flash_bytes_written_per_record=%.1f" % (prog / N))
    print("flash_write_amplification=%.2f" % (prog / N / rec))
    print("flash_erases_per_day=%.0f" % (er * PER_DAY / N))
    print("flash_record_bytes_per_erase=%.0f" % (N * rec / max(er, 1)))
    # segment files on the Pico W's littlefs
    fl = NorFlash(None, 848 * 1024)
    p = Partition(fl, 0, 848 * 1024)
    vfs.VfsLfs2.mkfs(p)
    vfs.mount(vfs.VfsLfs2(p), "/pico")
    with open("/pico/firmware.placeholder", "wb") as f:
        z = bytes(1024)
        for _ in range(FIRMWARE_FILES_BYTES // 1024):
            f.write(z)
    fj = FileJournal("/pico/journal", seg_bytes=32768, reserve_bytes=65536).open()
    prog, er = run(fj, fl)
    print("flash_bytes_written_per_record_littlefs=%.1f" % (prog / N))
    print("flash_write_amplification_littlefs=%.2f" % (prog / N / rec))
    print("flash_erases_per_day_littlefs=%.0f" % (er * PER_DAY / N))
    print("journal_capacity_days_littlefs_pico_w=%.1f" % (fj.capacity_bytes / rec / PER_DAY))
    per_sector = (4096 - 16) // ((rec + 15) // 16 * 16)
    print("journal_capacity_days_ring_esp32=%.1f" % ((psize // 4096 - 1) * per_sector / PER_DAY))
    print("record_bytes=%d records=%d" % (rec, N))


main()
