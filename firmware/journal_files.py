# The journal as segment files in a directory (firmware/journal.py has the record format and the
# release cursor): littlefs on a Pico W, where MicroPython's stock image leaves no raw flash, and a
# host directory on a Raspberry Pi. A segment that reaches seg_bytes is closed and the next one
# opened; at most max_segs segments exist.
#
# littlefs: a file handle keeps the size the file had when it was opened, so a reader that hits
# the end of a segment another handle has appended to reopens it before believing the end (the
# old reader skipped to the next segment and the backlog below was released unsent).
# littlefs also copies a file's last block on every synced append: about 21 x the record is
# written and one 4 KiB block erased per record (docs/firmware.md, "Flash"); the ESP32 avoids it
# with the record ring (journal_ring.py).

import os

from .journal import HDR_BYTES, MAGIC, REC_OVERHEAD, JournalBase, crc16, u32

from .compat import const

SUFFIX = ".jnl"
_ENOSPC = const(28)


def errno_of(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else 0


def _seg_name(d, segno):
    return "%s/%08d%s" % (d, segno, SUFFIX)


class FileReader:
    """Reads records in order from a position, across segment files. read() fills a caller
    buffer."""

    def __init__(self, journal):
        self.j = journal
        self.segno = 0
        self.off = 0
        self.f = None
        self.seq = -1          # seq of the record last returned
        self.n = 0
        self._h = bytearray(HDR_BYTES)
        self._c = bytearray(2)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None

    def seek_seq(self, seq):
        """Position before the first record with seq >= `seq` (scans headers, boot/connect only)."""
        self.close()
        j = self.j
        # find the last segment whose first seq <= seq
        s = j.first_seg
        k = s
        while k <= j.cur_seg:
            fs = j.first_seq_of(k)
            if fs >= 0 and fs <= seq:
                s = k
            k += 1
        self.segno = s
        self.off = 0
        while True:
            sq = self._peek()
            if sq < 0:
                return          # at the end of what is readable: later appends come next
            if sq >= seq:
                self.off -= REC_OVERHEAD + self.n    # back to that record's start
                return

    def seek_end(self):
        """Position at the journal's append point (only records appended later are read)."""
        self.close()
        self.segno = self.j.cur_seg
        self.off = self.j.cur_off

    def _open(self):
        if self.f is None:
            try:
                self.f = open(_seg_name(self.j.dir, self.segno), "rb")
            except OSError:
                return False
        return True

    def _next_seg(self):
        self.close()
        if self.segno >= self.j.cur_seg:
            return False
        self.segno += 1
        if self.segno < self.j.first_seg:
            self.segno = self.j.first_seg
        self.off = 0
        return True

    def _record(self, buf):
        """Read and check the record at off with this handle: its seq, or -1 (not readable)."""
        j = self.j
        f = self.f
        f.seek(self.off)
        h = self._h
        got = f.readinto(h)
        n = h[1]
        if got != HDR_BYTES or h[0] != MAGIC:
            return -2 if got else -1
        ok = True
        if buf is not None and n <= len(buf):
            ok = (f.readinto(buf, n) if n else 0) == n
            crc = crc16(buf, 0, n, crc16(h, 1, HDR_BYTES))
        else:
            crc = crc16(h, 1, HDR_BYTES)
            b = j._skipbuf
            left = n
            while ok and left:
                k = left if left < len(b) else len(b)
                ok = f.readinto(b, k) == k
                crc = crc16(b, 0, k, crc)
                left -= k
        if not (ok and f.readinto(self._c) == 2 and (self._c[0] | (self._c[1] << 8)) == crc):
            return -2
        self.n = n
        return u32(h, 2)

    def _peek(self, buf=None):
        """Read the record at off (payload into buf if given); advance; return its seq, or -1 at
        the end of what is readable now."""
        j = self.j
        reopened = False
        while True:
            if self.segno < j.first_seg:          # our segment was dropped under us
                self.close()
                self.segno = j.first_seg
                self.off = 0
            if not self._open():
                if not self._next_seg():
                    return -1
                continue
            sq = self._record(buf)
            if sq >= 0:
                self.off += REC_OVERHEAD + self.n
                return sq
            # Short or bad. On littlefs a handle sees the file as it was when opened: if the
            # store says there is more, look again through a fresh handle first.
            if not reopened and self.off < j.seg_size(self.segno):
                self.close()
                reopened = True
                continue
            reopened = False
            # the live end of the current segment, or a torn/garbled tail of an older one
            if self.segno >= j.cur_seg:
                return -1
            if sq == -2 or self.off < j.seg_size(self.segno):
                j.note_torn(self.segno)
            if not self._next_seg():
                return -1

    def read(self, buf):
        """Next sample record with its payload in buf: returns the payload length (self.seq is
        its seq), 0 when nothing more is readable now. Cursor marks are skipped."""
        while True:
            sq = self._peek(buf)
            if sq < 0:
                return 0
            if self.n:
                self.seq = sq
                return self.n


class FileJournal(JournalBase):
    """Segment files `<8 digits>.jnl` in `directory`. A segment that reaches seg_bytes is closed
    and the next one opened. The store's size is max_bytes, or, when that is 0, what the file
    system has free at open() (os.statvfs) minus reserve_bytes for the box's other files (state,
    config) and littlefs's own copy-on-write room. Past it the oldest segment is deleted and its
    unacknowledged samples are counted in `dropped`; a full file system (ENOSPC) does the same
    before the append is tried once more."""

    def __init__(self, directory, seg_bytes=32768, max_bytes=0, reserve_bytes=65536):
        JournalBase.__init__(self)
        self.dir = directory
        self.seg_bytes = seg_bytes
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.max_segs = 2
        self.first_seg = 1
        self.cur_seg = 1
        self.cur_off = 0
        self._f = None
        self._skipbuf = bytearray(64)
        self._broken = False
        self._torn_seen = {}
        self._first_seq_cache = {}

    # ------------------------------------------------------------ opening / recovery
    def open(self):
        """Find the segments, recover next_seq and released from the newest good record, size
        the store, and open the append point (a new segment after a torn tail)."""
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        nums = []
        for name in os.listdir(self.dir):
            if name.endswith(SUFFIX) and len(name) == 8 + len(SUFFIX):
                try:
                    nums.append(int(name[:8]))
                except ValueError:
                    pass
        nums.sort()
        if nums:
            self.first_seg = nums[0]
            self.cur_seg = nums[-1]
        else:
            self.first_seg = self.cur_seg = 1
        self._size_store(nums)
        # scan from the newest segment back to the first that holds a good record
        r = FileReader(self)
        k = self.cur_seg
        last = -1
        released = 0
        self.cur_off = 1 << 29      # while scanning: every segment may be read to its end
        while k >= self.first_seg:
            r.close()
            r.segno = k
            r.off = 0
            sq = -1
            good_end = 0
            save = self.cur_seg
            self.cur_seg = k        # a bad record ends the scan without skipping on
            while True:
                s2 = r._peek()
                if s2 < 0:
                    break
                sq = s2 if r.n else s2 - 1      # a mark carries next_seq, a sample its own
                good_end = r.off
                released = u32(r._h, 6)
            self.cur_seg = save
            if k == self.cur_seg:
                size = self._size(k)
                if size > good_end:
                    # torn or garbled tail in the newest segment: append in a fresh one
                    self.torn_tails += 1
                    self._torn_seen[k] = 1
                    self.cur_seg = k + 1
                    self.cur_off = 0
                else:
                    self.cur_off = good_end
            if sq >= 0:
                last = sq
                break
            k -= 1
        r.close()
        if self.cur_off == 1 << 29:
            self.cur_off = 0
        if last >= 0:
            self.next_seq = last + 1
        self.acked.released = released if released <= self.next_seq else self.next_seq
        self._f = open(_seg_name(self.dir, self.cur_seg), "ab")
        return self

    def _size_store(self, nums):
        cap = self.max_bytes
        if not cap:
            used = 0
            for k in nums:
                used += self._size(k)
            try:
                st = os.statvfs(self.dir)
                free = st[0] * st[4]          # f_bsize * f_bavail
            except (OSError, AttributeError):
                free = 0
            cap = free + used - self.reserve_bytes
        self.capacity_bytes = cap if cap > 0 else 0
        n = cap // self.seg_bytes
        self.max_segs = n if n >= 2 else 2

    def _size(self, segno):
        try:
            return os.stat(_seg_name(self.dir, segno))[6]
        except OSError:
            return 0

    def seg_size(self, segno):
        """Bytes in a segment as the store knows it (the append point for the current one)."""
        if segno == self.cur_seg:
            return self.cur_off
        return self._size(segno)

    def first_seq_of(self, segno):
        """seq of the first record of a segment (-1 if none); cached, the file is immutable
        once it has a first record."""
        c = self._first_seq_cache.get(segno)
        if c is not None:
            return c
        try:
            f = open(_seg_name(self.dir, segno), "rb")
        except OSError:
            return -1
        try:
            h = bytearray(HDR_BYTES)
            if f.readinto(h) != HDR_BYTES or h[0] != MAGIC:
                return -1
        finally:
            f.close()
        v = u32(h, 2)
        self._first_seq_cache[segno] = v
        return v

    def note_torn(self, segno):
        if segno not in self._torn_seen:
            self._torn_seen[segno] = 1
            self.torn_tails += 1

    def reader(self):
        return FileReader(self)

    def segments(self):
        return self.cur_seg - self.first_seg + 1

    # ------------------------------------------------------------ appending
    def _write(self, buf, n, seq):
        try:
            self._write_once(buf, n, seq)
        except OSError as e:
            # the flash is full (or failing): make room by dropping the oldest segment, then
            # try once more in a new segment; if that fails too the caller counts it
            if errno_of(e) != _ENOSPC or self.first_seg >= self.cur_seg:
                raise
            self._drop_oldest()
            self._write_once(buf, n, seq)

    def _write_once(self, buf, n, seq):
        if self._broken or (self.cur_off and self.cur_off + REC_OVERHEAD + n > self.seg_bytes):
            # a failed write may have left part of a record: never append behind it
            self._broken = True
            self._rotate()
            self._broken = False
        self._header(n, seq, buf)
        f = self._f
        try:
            f.write(self._h)
            if n:
                f.write(buf, n)
            f.write(self._c)
            f.flush()      # one record = one durable step (littlefs commits on flush/sync)
        except OSError:
            self._broken = True
            self.write_errors += 1
            raise
        self.cur_off += REC_OVERHEAD + n
        self.bytes_written += REC_OVERHEAD + n

    def _rotate(self):
        try:
            self._f.close()
        except OSError:
            pass
        self._f = None
        self.cur_seg += 1
        self.cur_off = 0
        # delete segments all of whose records are acknowledged, then enforce the bound
        while self.first_seg < self.cur_seg:
            nxt = self.first_seq_of(self.first_seg + 1) if self.first_seg + 1 < self.cur_seg \
                else self.next_seq
            full = self.cur_seg - self.first_seg >= self.max_segs
            if nxt >= 0 and nxt > self.acked.released and not full:
                break
            self._drop_first(nxt)
        self._f = open(_seg_name(self.dir, self.cur_seg), "ab")

    def _drop_first(self, nxt):
        lo = self.first_seq_of(self.first_seg)
        if nxt > self.acked.released:
            self._count_dropped(lo if lo >= 0 else self.acked.released, nxt)
        self._delete(self.first_seg)
        self.first_seg += 1

    def _drop_oldest(self):
        nxt = self.first_seq_of(self.first_seg + 1) if self.first_seg + 1 < self.cur_seg \
            else self.next_seq
        self._drop_first(nxt)
        self._broken = True       # the next write starts a new segment

    def _delete(self, segno):
        try:
            os.remove(_seg_name(self.dir, segno))
        except OSError:
            pass
        self._first_seq_cache.pop(segno, None)

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
