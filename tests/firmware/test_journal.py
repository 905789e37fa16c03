# The flash journal under MicroPython, on the stores a box uses: segment files on littlefs
# (vfs.VfsLfs2 on the sim board's emulated NOR flash, as on a Pico W), segment files in a host
# directory (Raspberry Pi), and the record ring on a raw partition (ESP32). Recovery after a power
# cut at every flash write, torn and garbled tails, a full store, a full file system (ENOSPC),
# acknowledgements above the cursor, a live reader on littlefs, and appends that allocate nothing.
import os
import vfs

import micropython
import mptest
from envbox.boards.simflash import NorFlash, Partition
from envbox.firmware import journal as J
from envbox.firmware.journal_files import FileJournal
from envbox.firmware.journal_ring import SECTOR, RingJournal, padded

_N = [0]


def _uniq():
    _N[0] += 1
    return _N[0]


def _rmtree(d):
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)
    except OSError:
        pass


class Store:
    """A journal store that can be reopened as after a reboot, and power-cut."""

    def __init__(self, kind, size=256 * 1024, seg_bytes=4096, max_bytes=0):
        self.kind = kind
        self.seg_bytes = seg_bytes
        self.max_bytes = max_bytes
        k = _uniq()
        if kind == "dir":
            self.dir = "/tmp/envbox-mptest-journal-%d" % k
            _rmtree(self.dir)
            if not max_bytes:
                self.max_bytes = 64 * seg_bytes
        else:
            self.flash = NorFlash(None, size, kill=False)
            self.part = Partition(self.flash, 0, size)
            if kind == "lfs":
                self.mnt = "/lfs%d" % k
                vfs.VfsLfs2.mkfs(self.part)
                self._mount()
                self.dir = self.mnt + "/journal"
        self.j = None

    def _mount(self):
        vfs.mount(vfs.VfsLfs2(self.part), self.mnt)

    def open(self):
        if self.kind == "ring":
            self.j = RingJournal(self.part).open()
        else:
            self.j = FileJournal(self.dir, seg_bytes=self.seg_bytes, max_bytes=self.max_bytes,
                                   reserve_bytes=16 * 1024).open()
        return self.j

    def reboot(self):
        """Power back on: the same flash, fresh RAM (littlefs remounted)."""
        if self.j is not None:
            # (the old RAM state must not write later: close it while the power is still out)
            try:
                self.j.close()
            except OSError:
                pass
        if self.kind != "dir":
            self.flash = self.flash.reborn()
            self.part = Partition(self.flash, 0, self.part.size)
        if self.kind == "lfs":
            try:
                vfs.umount(self.mnt)
            except OSError:
                pass
            self._mount()
        return self.open()

    def done(self):
        if self.kind == "lfs":
            try:
                self.j.close()
                vfs.umount(self.mnt)
            except OSError:
                pass
        elif self.kind == "dir":
            try:
                self.j.close()
            except OSError:
                pass
            _rmtree(self.dir)


# the 32-bit WebAssembly build has no littlefs: there the littlefs cases are left out (they run in
# the Unix-port lane) and the rest runs on 32-bit integers
HAVE_LFS = hasattr(vfs, "VfsLfs2")
KINDS = ("dir", "lfs", "ring") if HAVE_LFS else ("dir", "ring")
if not HAVE_LFS:
    print("SKIP littlefs cases: this MicroPython has no vfs.VfsLfs2")


def _payload(i, n=40):
    b = bytearray(n)
    for k in range(n):
        b[k] = (i * 7 + k) & 0xFF
    return b


def _read_all(j, start=0):
    r = j.reader()
    r.seek_seq(start)
    buf = bytearray(255)
    out = []
    while True:
        n = r.read(buf)
        if not n:
            break
        out.append((r.seq, bytes(buf[:n])))
    r.close()
    return out


def test_append_reopen_reads_everything_back_in_order():
    for kind in KINDS:
        st = Store(kind)
        j = st.open()
        for i in range(300):
            mptest.eq(j.append(_payload(i, 30 + i % 70), 30 + i % 70), i)
        j = st.reboot()
        mptest.eq(j.next_seq, 300, kind)
        got = _read_all(j)
        mptest.eq([s for s, _ in got], list(range(300)), kind)
        for s, p in got:
            mptest.eq(p, bytes(_payload(s, 30 + s % 70)), kind)
        st.done()


def test_a_live_reader_sees_every_append_across_segments():
    # The box's live path: a reader positioned at the end, the sampler appending through the
    # journal's own handle. On littlefs a handle keeps the size its file had when opened: the old
    # reader stopped there, skipped to the next segment and the backlog was released unsent.
    for kind in KINDS:
        st = Store(kind)
        j = st.open()
        r = j.reader()
        r.seek_end()
        buf = bytearray(255)
        seen = []
        for i in range(400):
            j.append(_payload(i), 40)
            if i % 3 == 2:          # the uplink runs every few samples
                while True:
                    n = r.read(buf)
                    if not n:
                        break
                    seen.append(r.seq)
        while r.read(buf):
            seen.append(r.seq)
        mptest.eq(seen, list(range(400)), kind)
        mptest.eq(j.torn_tails, 0, kind)
        st.done()


def test_a_power_cut_at_any_flash_write_loses_nothing_journaled():
    # cut the power at the n-th program/erase of the flash (that write torn or lost, nothing
    # after it), reboot: every sample whose append returned is still there, nothing is misread,
    # and the box carries on appending
    for kind in KINDS[1:]:
        for torn in (0, 7):
            for cut in range(1, 140, 3):
                st = Store(kind, size=64 * 1024, seg_bytes=2048)
                j = st.open()
                st.flash.ops = 0
                st.flash.cut_at = cut
                st.flash.torn = torn
                done = 0
                try:
                    for i in range(200):
                        j.append(_payload(i), 40)
                        done = i + 1
                except OSError:
                    pass
                j = st.reboot()
                got = _read_all(j)
                seqs = [s for s, _ in got]
                what = "%s cut at write %d torn %d" % (kind, cut, torn)
                mptest.eq(seqs[:done], list(range(done)), what)
                mptest.true(len(seqs) <= done + 1, what)      # at most the record in flight
                for s, p in got:
                    mptest.eq(p, bytes(_payload(s)), what)
                # and on it goes: new records after the recovered ones, all readable
                for i in range(len(seqs), len(seqs) + 30):
                    mptest.eq(j.append(_payload(i), 40), i, what)
                j = st.reboot()
                mptest.eq([s for s, _ in _read_all(j)], list(range(len(seqs) + 30)), what)
                st.done()


def test_garbled_tail_is_skipped_never_misread():
    st = Store("dir", seg_bytes=100000)
    j = st.open()
    for i in range(5):
        j.append(_payload(i), 40)
    j.close()
    path = st.dir + "/00000001.jnl"
    with open(path, "rb") as f:
        full = f.read()
    rec = J.REC_OVERHEAD + 40
    # flip one byte anywhere in the last record: that record (only) is gone
    for pos in range(4 * rec, 5 * rec, 5):
        bad = bytearray(full)
        bad[pos] ^= 0x5A
        with open(path, "wb") as f:
            f.write(bad)
        for n in os.listdir(st.dir):
            if st.dir + "/" + n != path:
                os.remove(st.dir + "/" + n)
        j = st.open()
        got = _read_all(j)
        mptest.eq([s for s, _ in got], [0, 1, 2, 3], "flip at %d" % pos)
        j.close()
    # random garbage appended after good records
    for n in os.listdir(st.dir):
        os.remove(st.dir + "/" + n)
    with open(path, "wb") as f:
        f.write(full)
        f.write(mptest.rand_bytes(37))
    j = st.open()
    mptest.eq([s for s, _ in _read_all(j)], [0, 1, 2, 3, 4])
    mptest.eq(j.torn_tails, 1)
    st.done()


def test_a_full_store_drops_oldest_and_counts_them():
    for kind in KINDS:
        st = Store(kind, size=48 * 1024, seg_bytes=1024, max_bytes=12 * 1024)
        j = st.open()
        for i in range(1200):
            j.append(_payload(i), 40)
        got = [s for s, _ in _read_all(j, j.released)]
        mptest.true(got[0] > 0, kind)
        mptest.eq(got, list(range(got[0], 1200)), kind)
        mptest.eq(j.dropped, got[0], kind + ": every record not on flash any more was counted")
        mptest.eq(j.released, got[0], kind)
        mptest.eq(j.depth(), 1200 - got[0], kind)
        st.done()


def test_a_full_file_system_becomes_drop_oldest():
    if not HAVE_LFS:
        return
    # littlefs sized for the journal at open (statvfs), then something else takes the space:
    # ENOSPC must not stop the box, the oldest segment goes, the append succeeds, all counted
    st = Store("lfs", size=96 * 1024, seg_bytes=2048)
    j = st.open()
    cap = j.capacity_bytes
    mptest.true(0 < cap < 96 * 1024, "sized from statvfs: %d" % cap)
    for i in range(100):
        j.append(_payload(i), 40)
    with open(st.mnt + "/filler", "wb") as f:     # the config file grew, say
        try:
            for _ in range(200):
                f.write(bytes(1024))
        except OSError:
            pass
    for i in range(100, 1500):
        mptest.eq(j.append(_payload(i), 40), i)
    mptest.true(j.dropped > 0)
    got = [s for s, _ in _read_all(j, j.released)]
    mptest.eq(got, list(range(j.released, 1500)))
    mptest.eq(j.dropped, j.released)
    st.done()


def test_acknowledgements_above_the_cursor():
    for kind in KINDS:
        st = Store(kind)
        j = st.open()
        for i in range(100):
            j.append(_payload(i), 40)
        j.ack(50, 60)          # a gateway holds these before the older ones arrived
        j.ack(70, 80)
        mptest.eq(j.released, 0, kind)
        mptest.eq(j.depth(), 80, kind)
        mptest.true(j.covers(55) and not j.covers(60) and j.covers(79), kind)
        j.ack(0, 50)           # the cursor runs through the range above it
        mptest.eq(j.released, 60, kind)
        j.ack(60, 65)
        mptest.eq(j.released, 65, kind)
        j.ack(65, 70)
        mptest.eq(j.released, 80, kind)
        j.ack(90, 500)         # never past what exists
        j.ack(80, 90)
        mptest.eq(j.released, 100, kind)
        mptest.eq(j.depth(), 0, kind)
        st.done()


def test_many_ranges_keep_the_nearest():
    a = J.Acked()
    for k in range(20, 0, -1):
        a.add(100 * k, 100 * k + 10)
    mptest.eq(a.n, J.ACK_SLOTS)
    mptest.eq(a.lo[0], 100)                     # the ranges nearest the cursor are kept
    a.add(0, 100)
    mptest.eq(a.released, 110)
    mptest.true(not a.covers(110) and a.covers(205))


def test_released_records_are_not_resent_after_reboot():
    for kind in KINDS:
        st = Store(kind)
        j = st.open()
        for i in range(10):
            j.append(_payload(i), 40)
        j.ack(0, 7)           # a gateway holds 0..6
        j.append(_payload(10), 40)   # carries released=7 to flash
        j.ack(7, 9)           # acknowledged after the last append: not on flash yet
        j = st.reboot()
        mptest.eq(j.released, 7, kind)
        mptest.eq(j.next_seq, 11, kind)
        mptest.eq([s for s, _ in _read_all(j, j.released)], [7, 8, 9, 10], kind)
        # a mark persists the cursor without a sample and does not use up a seq
        j.ack(7, 11)
        j.mark()
        j = st.reboot()
        mptest.eq(j.released, 11, kind)
        mptest.eq(j.next_seq, 11, kind)
        mptest.eq(j.depth(), 0, kind)
        st.done()


def test_fully_released_segments_are_deleted_at_rotation():
    st = Store(KINDS[-2], seg_bytes=J.REC_OVERHEAD * 5 + 200)
    j = st.open()
    for i in range(40):
        j.append(_payload(i), 40)
        j.ack(i, i + 1)
    mptest.true(j.segments() <= 2, "%d segments" % j.segments())
    mptest.eq(j.dropped, 0)
    st.done()


class _RamPartition:
    """A raw partition as a C driver behaves: reads and writes allocate nothing."""

    def __init__(self, nsec):
        self.b = bytearray(b"\xff" * (nsec * SECTOR))
        self.nsec = nsec

    def readblocks(self, block, buf, off=0):
        a = block * SECTOR + off
        for i in range(len(buf)):
            buf[i] = self.b[a + i]

    def writeblocks(self, block, buf, off=0):
        a = block * SECTOR + off
        for i in range(len(buf)):
            self.b[a + i] &= buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return self.nsec
        if op == 5:
            return SECTOR
        if op == 6:
            a = arg * SECTOR
            for i in range(SECTOR):
                self.b[a + i] = 0xFF
            return 0
        return 0


def test_append_and_read_allocate_nothing():
    d = "/tmp/envbox-mptest-journal-alloc-%d" % _uniq()
    _rmtree(d)
    for j in (FileJournal(d, seg_bytes=100000, max_bytes=400000).open(),
              RingJournal(_RamPartition(8)).open()):
        p = _payload(1)
        buf = bytearray(255)
        r = j.reader()
        r.seek_end()
        j.append(p, 40)
        r.read(buf)
        micropython.heap_lock()
        try:
            for i in range(150):         # the ring wraps (8 sectors of 64 records)
                j.append(p, 40)
                r.read(buf)
                j.ack(i, i + 1)
        finally:
            micropython.heap_unlock()
        mptest.eq(r.seq, 150)
        j.close()
    _rmtree(d)


class _FailingFile:
    """Writes the first k bytes of a record, then fails like a failing flash (EIO)."""

    def __init__(self, f, k):
        self.f = f
        self.k = k

    def write(self, b, n=None):
        n = len(b) if n is None else n
        if self.k <= 0:
            raise OSError(5)
        take = n if n < self.k else self.k
        self.f.write(b, take)
        self.k -= take
        if take < n:
            raise OSError(5)
        return take

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def test_a_failed_write_never_leaves_good_records_behind_garbage():
    st = Store("dir", seg_bytes=100000)
    j = st.open()
    for i in range(3):
        j.append(_payload(i), 40)
    j._f = _FailingFile(j._f, 17)          # part of the next record reaches the flash
    mptest.raises(OSError, j.append, _payload(3), 40)
    mptest.eq(j.write_errors, 1)
    for i in range(3, 6):                   # the flash works again
        j.append(_payload(i), 40)
    j = st.reboot()
    got = _read_all(j)
    mptest.eq([s for s, _ in got], [0, 1, 2, 3, 4, 5])
    mptest.eq(got[3][1], bytes(_payload(3)))
    st.done()


def test_ring_wear_is_one_write_per_record_and_one_erase_per_sector_lap():
    st = Store("ring", size=64 * 1024)
    j = st.open()
    st.flash.programmed = st.flash.erases = 0
    n = 2000
    for i in range(n):
        j.append(_payload(i, 93), 93)     # a full-kit sample
        j.ack(i, i + 1)
    rec = J.REC_OVERHEAD + 93
    per_rec = st.flash.programmed / n
    mptest.true(per_rec <= 1.5 * rec, "%.1f bytes programmed per %d-byte record" % (per_rec, rec))
    # one erase per sector and lap: records padded to 16 bytes, 16 bytes of sector header
    per_sector = (SECTOR - 16) // padded(93)
    mptest.true(st.flash.erases <= n // per_sector + 1,
                "%d erases for %d records" % (st.flash.erases, n))
    mptest.true(st.flash.erases * 4096 <= 1.1 * n * rec, "about one erase per 4 KiB")
    st.done()


def test_crc16_known_answer():
    # CRC-16/CCITT-FALSE check value of "123456789" (the catalogue's check)
    mptest.eq(J.crc16(b"123456789", 0, 9), 0x29B1)


mptest.main(globals())
