# The box's store-and-forward journal on flash: every sample is appended here before it is
# published, and released only when a gateway acknowledges that it holds it (wire.KIND_ACK;
# docs/firmware.md, "Journal" and "End-to-end acknowledgement").
#
# Two stores share the record format, the release cursor and the reader's interface (this
# module); each lives in its own module so a box loads only the one it uses:
#   FileJournal (journal_files) segment files in a directory: littlefs on a Pico W (no raw flash
#                               there), a host directory on a Raspberry Pi
#   RingJournal (journal_ring)  records written in place on a raw flash partition, one erase per
#                               4 KiB sector per lap: the ESP32 with the project's partition table
# The board chooses (BoardBase.open_journal). Measured write amplification of both on the
# simulated flash: docs/firmware.md, "Flash".
#
# Record (little-endian), 12 + n bytes:
#   u8  magic      0xEB
#   u8  n          payload length, 0..255 (0 = a cursor mark: no sample, just `released`)
#   u32 seq        the sample's sequence number (strictly increasing across reboots)
#   u32 released   every seq < released was acknowledged when this record was written
#   n   payload    the wire payload (firmware/wire.py, KIND_SAMPLE)
#   u16 crc        CRC-16/CCITT-FALSE over n, seq, released and payload
# The CRC sits after the payload, so a record cut anywhere (power cut mid-write) fails it; a torn
# or garbled record ends the readable part of its segment: it and anything after it there are
# skipped and counted (torn_tails), never misread. Appending resumes in a new segment after a
# torn tail, so good records are never written behind garbage.
#
# The release cursor costs no extra writes: each appended record carries it. After a crash the
# cursor of the last record is used, so samples acknowledged after the last append are sent once
# more, with identical bytes (at-least-once; the gateway stores a sample once by device and seq).
# Acknowledgements above the cursor (a gateway may hold seq 900 before 850 arrives) are kept in
# RAM, a few ranges (Acked), and lost at a reboot: those samples are sent again.
#
# No allocation on append or read: preallocated buffers, the CRC a table of small integers (array
# 'H'); binascii.crc32 would return a boxed integer on 32-bit ports and needs an exact-length
# slice.

import struct

from array import array

from .compat import const

MAGIC = const(0xEB)
HDR_BYTES = const(10)      # magic, n, seq, released
REC_OVERHEAD = const(12)   # header + crc
MAX_PAYLOAD = const(255)
ACK_SLOTS = const(8)       # acknowledged ranges kept above the cursor


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


def u32(b, p):
    """Little-endian u32 at b[p] (seqs stay below 2^30: a small integer on 32-bit ports)."""
    return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)


class Acked:
    """The release cursor and what a gateway acknowledged above it. Every seq < released is
    acknowledged; lo[k] <= seq < hi[k] for k < n is too. At most ACK_SLOTS ranges are kept (the
    ones nearest the cursor): a range that does not fit is forgotten and its samples are sent
    again, which is safe."""

    def __init__(self):
        self.released = 0
        self.lo = array("i", bytes(4 * ACK_SLOTS))
        self.hi = array("i", bytes(4 * ACK_SLOTS))
        self.n = 0

    def add(self, a, b):
        """seqs a..b-1 are held by a gateway. Returns True if the cursor moved."""
        if b <= self.released:
            return False
        if a <= self.released:
            self.released = b
            self._absorb()
            return True
        lo = self.lo
        hi = self.hi
        n = self.n
        # merge with an overlapping or touching range
        for k in range(n):
            if a <= hi[k] and b >= lo[k]:
                if a < lo[k]:
                    lo[k] = a
                if b > hi[k]:
                    hi[k] = b
                self._coalesce()
                return False
        # insert in order; when full, the range farthest above the cursor is forgotten
        k = n
        while k > 0 and lo[k - 1] > a:
            k -= 1
        if n == ACK_SLOTS:
            if k == n:
                return False
            n -= 1
        i = n
        while i > k:
            lo[i] = lo[i - 1]
            hi[i] = hi[i - 1]
            i -= 1
        lo[k] = a
        hi[k] = b
        self.n = n + 1
        return False

    def _coalesce(self):
        lo = self.lo
        hi = self.hi
        k = 0
        while k + 1 < self.n:
            if lo[k + 1] <= hi[k]:
                if hi[k + 1] > hi[k]:
                    hi[k] = hi[k + 1]
                self._remove(k + 1)
            else:
                k += 1

    def _remove(self, k):
        lo = self.lo
        hi = self.hi
        for i in range(k, self.n - 1):
            lo[i] = lo[i + 1]
            hi[i] = hi[i + 1]
        self.n -= 1

    def _absorb(self):
        # ranges now at or below the cursor join it
        while self.n and self.lo[0] <= self.released:
            if self.hi[0] > self.released:
                self.released = self.hi[0]
            self._remove(0)

    def set_released(self, r):
        if r > self.released:
            self.released = r
            self._absorb()

    def covers(self, seq):
        if seq < self.released:
            return True
        for k in range(self.n):
            if self.lo[k] <= seq < self.hi[k]:
                return True
        return False

    def above(self, upto):
        """How many seqs in [released, upto) are acknowledged."""
        c = 0
        for k in range(self.n):
            h = self.hi[k] if self.hi[k] < upto else upto
            if h > self.lo[k]:
                c += h - self.lo[k]
        return c


class JournalBase:
    """What both stores share: counters, the cursor, acknowledgements."""

    def __init__(self):
        self.next_seq = 0          # seq the next appended sample gets
        self.acked = Acked()
        self.appended = 0
        self.dropped = 0           # unacknowledged samples overwritten because the store was full
        self.torn_tails = 0        # segments/sectors whose tail was unreadable
        self.bytes_written = 0     # record bytes written (what the store wrote: see flash stats)
        self.write_errors = 0
        self.capacity_bytes = 0
        self._h = bytearray(HDR_BYTES)
        self._c = bytearray(2)

    @property
    def released(self):
        return self.acked.released

    def start_seq(self, seq):
        """A journal without records (new box) continues numbering from the persisted state."""
        if self.next_seq < seq:
            self.next_seq = seq
            self.acked.set_released(seq)

    def ack(self, lo, hi):
        """A gateway holds seqs lo..hi-1 durably (wire.KIND_ACK). Returns True if the release
        cursor moved (persisted with the next record or mark)."""
        if hi > self.next_seq:
            hi = self.next_seq     # never past what exists (a stale ack from an older life)
        if lo >= hi:
            return False
        return self.acked.add(lo, hi)

    def release(self, upto):
        """Every seq < upto is acknowledged."""
        if upto > self.next_seq:
            upto = self.next_seq
        self.acked.set_released(upto)

    def covers(self, seq):
        return self.acked.covers(seq)

    def depth(self):
        """Samples journaled and not yet acknowledged by a gateway."""
        a = self.acked
        return self.next_seq - a.released - a.above(self.next_seq)

    def _header(self, n, seq, buf):
        h = self._h
        h[0] = MAGIC
        h[1] = n
        struct.pack_into("<II", h, 2, seq, self.acked.released)
        crc = crc16(h, 1, HDR_BYTES)
        if n:
            crc = crc16(buf, 0, n, crc)
        c = self._c
        c[0] = crc & 0xFF
        c[1] = crc >> 8

    def _count_dropped(self, lo, hi):
        """The records lo..hi-1 are gone (store full): count the unacknowledged ones and move
        the cursor past them."""
        a = self.acked
        if hi <= a.released:
            return
        if lo < a.released:
            lo = a.released
        self.dropped += (hi - lo) - a.above(hi) + a.above(lo)
        a.set_released(hi)

    def _write(self, buf, n, seq):
        raise NotImplementedError      # the store's own (FileJournal, RingJournal)

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


