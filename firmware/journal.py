# The box's store-and-forward journal on flash: every sample is appended here before it is
# published, and released only after the broker's PUBACK (docs/firmware.md, "Journal").
#
# Files in one directory, a ring of segment files named by a growing number (00000001.jnl, ...).
# Records are appended to the newest segment; a segment that reaches seg_bytes is closed and a new
# one opened. At most max_segs segments exist: rotating past that deletes the oldest one, and the
# unreleased records it held are counted in dropped (the bounded drop policy: oldest first).
# Segments whose records are all released are deleted at rotation too, so a box that is online
# keeps only the current segment and its predecessor on flash.
#
# Record (little-endian), 12 + n bytes:
#   u8  magic      0xEB
#   u8  n          payload length, 0..255 (0 = a cursor mark: no sample, just `released`)
#   u32 seq        the sample's sequence number (strictly increasing across reboots)
#   u32 released   every seq < released was acknowledged when this record was written
#   n   payload    the wire payload (firmware/wire.py, KIND_SAMPLE)
#   u16 crc        CRC-16/CCITT-FALSE over n, seq, released and payload
# The CRC sits after the payload, so a record cut anywhere (power cut mid-write) fails it; a torn
# or garbled record ends the readable part of its segment: it and anything after it in that
# segment are skipped and counted (torn_tails), never misread. Appending resumes in a new segment
# after a torn tail, so good records are never written behind garbage.
#
# The release cursor costs no extra writes: each appended record carries it. After a crash the
# cursor of the last record is used, so samples acknowledged after the last append are sent once
# more, with identical bytes (at-least-once; the gateway's rows are keyed by device and time).
#
# No allocation on append or read: one preallocated header buffer, files opened once, the CRC a
# table of small integers (array 'H'); binascii.crc32 would return a boxed integer on 32-bit
# ports and needs an exact-length slice.

import os
import struct

from array import array

try:
    from micropython import const
except ImportError:  # CPython (host tools read journals with this module too)
    def const(x):
        return x

MAGIC = const(0xEB)
HDR_BYTES = const(10)      # magic, n, seq, released
REC_OVERHEAD = const(12)   # header + crc
MAX_PAYLOAD = const(255)
SUFFIX = ".jnl"


def _crc_table():
    t = array("H", bytes(512))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_TAB = _crc_table()


def crc16(buf, start, end, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of buf[start:end], without slicing."""
    t = _TAB
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


def _seg_name(d, segno):
    return "%s/%08d%s" % (d, segno, SUFFIX)


def _isfile(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Reader:
    """Reads records in order from a position, across segments. read() fills a caller buffer."""

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

    def _peek(self, buf=None):
        """Read the record at off (payload into buf if given); advance; return its seq, or -1 at
        the end of what is readable now."""
        j = self.j
        while True:
            if self.segno < j.first_seg:          # our segment was dropped under us
                self.close()
                self.segno = j.first_seg
                self.off = 0
            if not self._open():
                if not self._next_seg():
                    return -1
                continue
            f = self.f
            f.seek(self.off)
            h = self._h
            got = f.readinto(h)
            n = h[1]
            ok = got == HDR_BYTES and h[0] == MAGIC
            if ok:
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
                ok = ok and f.readinto(self._c) == 2 and \
                    (self._c[0] | (self._c[1] << 8)) == crc
            if ok:
                self.off += REC_OVERHEAD + n
                self.n = n
                return h[2] | (h[3] << 8) | (h[4] << 16) | (h[5] << 24)
            # nothing more in this segment: either the live end of the current segment, or a
            # torn/garbled tail of an older one (skip the rest of that segment)
            if self.segno >= j.cur_seg:
                return -1
            if got:
                j.note_torn(self.segno, self.off)
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


class Journal:
    def __init__(self, directory, seg_bytes=65536, max_segs=16):
        self.dir = directory
        self.seg_bytes = seg_bytes
        self.max_segs = max_segs
        self.first_seg = 1
        self.cur_seg = 1
        self.cur_off = 0
        self._f = None
        self._h = bytearray(HDR_BYTES)
        self._c = bytearray(2)
        self._skipbuf = bytearray(64)
        self.next_seq = 0          # seq the next appended sample gets
        self.released = 0          # every seq < released is acknowledged
        self.appended = 0
        self.dropped = 0           # unreleased records deleted because the journal was full
        self.torn_tails = 0        # segments whose tail was unreadable
        self.bytes_written = 0
        self.rotations = 0
        self.write_errors = 0
        self._broken = False
        self._torn_seen = {}
        self._first_seq_cache = {}

    # ------------------------------------------------------------ opening / recovery
    def open(self):
        """Find the segments, recover next_seq and released from the newest good record, and
        open the append point (a new segment after a torn tail)."""
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
        # scan from the newest segment back to the first that holds a good record
        r = Reader(self)
        k = self.cur_seg
        last = -1
        while k >= self.first_seg:
            r.close()
            r.segno = k
            r.off = 0
            sq = -1
            good_end = 0
            # in this loop cur_seg is k, so a bad record ends the scan without skipping on
            save = self.cur_seg
            self.cur_seg = k
            while True:
                s2 = r._peek()
                if s2 < 0:
                    break
                sq = s2 if r.n else s2 - 1      # a mark carries next_seq, a sample its own
                good_end = r.off
                self.released = r._h[6] | (r._h[7] << 8) | (r._h[8] << 16) | (r._h[9] << 24)
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
        if last >= 0:
            self.next_seq = last + 1
        if self.released > self.next_seq:
            self.released = self.next_seq
        self._f = open(_seg_name(self.dir, self.cur_seg), "ab")
        return self

    def _size(self, segno):
        try:
            return os.stat(_seg_name(self.dir, segno))[6]
        except OSError:
            return 0

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
        v = h[2] | (h[3] << 8) | (h[4] << 16) | (h[5] << 24)
        self._first_seq_cache[segno] = v
        return v

    def note_torn(self, segno, off):
        if segno not in self._torn_seen:
            self._torn_seen[segno] = 1
            self.torn_tails += 1

    def start_seq(self, seq):
        """A journal without records (new box) continues numbering from the persisted state."""
        if self.next_seq < seq:
            self.next_seq = seq
            if self.released < seq:
                self.released = seq

    # ------------------------------------------------------------ appending
    def append(self, buf, n):
        """Append one sample (wire payload buf[:n]) under seq next_seq; return its seq."""
        seq = self.next_seq
        self._write(buf, n, seq)
        self.next_seq = seq + 1
        self.appended += 1
        return seq

    def mark(self):
        """Persist the release cursor without a sample (end of a catch-up, clean shutdown)."""
        self._write(None, 0, self.next_seq)

    def _write(self, buf, n, seq):
        if self._broken or (self.cur_off and self.cur_off + REC_OVERHEAD + n > self.seg_bytes):
            # a failed write may have left part of a record: never append behind it
            self._broken = True
            self._rotate()
            self._broken = False
        h = self._h
        h[0] = MAGIC
        h[1] = n
        struct.pack_into("<II", h, 2, seq, self.released)
        crc = crc16(h, 1, HDR_BYTES)
        if n:
            crc = crc16(buf, 0, n, crc)
        c = self._c
        c[0] = crc & 0xFF
        c[1] = crc >> 8
        f = self._f
        try:
            f.write(h)
            if n:
                f.write(buf, n)
            f.write(c)
            f.flush()      # one record = one durable step (littlefs commits on flush/sync)
        except OSError:
            self._broken = True     # flash full or failing: the caller counts it
            self.write_errors += 1
            raise
        self.cur_off += REC_OVERHEAD + n
        self.bytes_written += REC_OVERHEAD + n

    def _rotate(self):
        try:
            self._f.close()
        except OSError:
            pass
        self.cur_seg += 1
        self.cur_off = 0
        self.rotations += 1
        # delete segments all of whose records are released, then enforce the bound
        while self.first_seg < self.cur_seg:
            nxt = self.first_seq_of(self.first_seg + 1) if self.first_seg + 1 < self.cur_seg \
                else self.next_seq
            full = self.cur_seg - self.first_seg >= self.max_segs
            if nxt >= 0 and nxt > self.released and not full:
                break
            if nxt > self.released:
                lo = self.first_seq_of(self.first_seg)
                if lo < self.released:
                    lo = self.released
                if nxt > lo:
                    self.dropped += nxt - lo
                self.released = nxt
            self._delete(self.first_seg)
            self.first_seg += 1
        self._f = open(_seg_name(self.dir, self.cur_seg), "ab")

    def _delete(self, segno):
        try:
            os.remove(_seg_name(self.dir, segno))
        except OSError:
            pass
        self._first_seq_cache.pop(segno, None)

    # ------------------------------------------------------------ releasing
    def release(self, upto):
        """Every seq < upto is acknowledged (RAM; persisted with the next record)."""
        if upto > self.released:
            self.released = upto if upto <= self.next_seq else self.next_seq

    def depth(self):
        """Samples journaled and not yet acknowledged."""
        return self.next_seq - self.released

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
