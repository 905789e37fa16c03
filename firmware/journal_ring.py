# The journal as a ring of records written in place on a raw flash partition (an ESP32's
# "journal" data partition through esp32.Partition; the sim board's emulated flash), for the
# wear it saves: littlefs copies a file's last block on every synced append (about 21 x the
# record written, one erase per record), the ring writes each record once and erases each 4 KiB
# sector once per lap (docs/firmware.md, "Flash").
#
# Sector (4096 bytes), erased before its first use in a lap:
#   header, 16 bytes: u8 0xE5, u8 0x4A, u8 version 1, u8 0xFF, u32 serial (little-endian; +1 for
#   every sector started, so the newest sector is the one with the largest serial), 4 bytes 0xFF,
#   u16 CRC-16 of the 12 bytes before, 2 bytes 0xFF
#   records from offset 16, each the journal's record (firmware/journal.py) padded with 0xFF to a
#   multiple of 16 bytes; a byte 0xFF where a record would start ends the sector's records
# Flash programming can only clear bits, so nothing is ever written twice: after a torn record
# (power cut mid-write) or a failed write, appending continues in the next sector.
#
# Recovery at boot (firmware/ringopen.py, run once) reads every sector's header (one 16-byte read
# each) and the newest sector's records. Full: the next sector is erased; the unacknowledged
# samples it held are counted in `dropped` (oldest first). Reading and appending allocate
# nothing: fixed buffers, and the padded record sizes as preallocated memoryviews (a slice would
# be a new object every time).

from .journal import HDR_BYTES, MAGIC, REC_OVERHEAD, JournalBase, crc16, u32

from .compat import const

SECTOR = const(4096)
SEC_HDR = const(16)
_ALIGN = const(16)
_MAX_REC = const(272)       # padded(MAX_PAYLOAD): 12 + 255 bytes, to a multiple of 16


def padded(n):
    """Bytes a record with an n-byte payload takes in the ring."""
    return (REC_OVERHEAD + n + _ALIGN - 1) // _ALIGN * _ALIGN


class RingReader:
    def __init__(self, journal):
        self.j = journal
        self.sec = 0
        self.serial = -1       # the serial of `sec` when we entered it
        self._recycled = 0     # the journal's recycled count when we last checked
        self.off = SEC_HDR
        self.seq = -1
        self.n = 0

    def close(self):
        pass

    def _enter(self, sec, off):
        j = self.j
        self.sec = sec
        self.off = off
        self.serial = j.sector_serial(sec)
        self._recycled = j.recycled

    def seek_end(self):
        j = self.j
        self._enter(j.cur_sec, j.cur_off)

    def seek_seq(self, seq):
        """Before the first record with seq >= `seq` (one header read per live sector, then
        the records of one sector: boot/connect only)."""
        j = self.j
        s = j.oldest
        k = s
        while True:
            fs = j.first_seq_of(k)
            if fs >= 0 and fs <= seq:
                s = k
            if k == j.cur_sec:
                break
            k = (k + 1) % j.nsec
        self._enter(s, SEC_HDR)
        while True:
            sq = self._peek(None)
            if sq < 0:
                return
            if sq >= seq:
                self.off -= padded(self.n)     # back to that record's start (in self.sec)
                return

    def _peek(self, buf):
        j = self.j
        while True:
            if j.recycled != self._recycled:
                # the ring dropped a sector since we last looked: if it was ours (or ours was
                # then reused), continue at the oldest
                self._recycled = j.recycled
                if not j.live(self.sec) or j.sector_serial(self.sec) != self.serial:
                    self._enter(j.oldest, SEC_HDR)
            if self.sec == j.cur_sec and self.off >= j.cur_off:
                return -1
            sq = j.read_record(self.sec, self.off, buf)
            if sq >= 0:
                self.off += padded(j.last_n)
                self.n = j.last_n
                return sq
            if self.sec == j.cur_sec:
                return -1
            if sq == -2:
                j.note_torn(self.serial)
            # on to the next sector of the ring
            self._enter((self.sec + 1) % j.nsec, SEC_HDR)

    def read(self, buf):
        while True:
            sq = self._peek(buf)
            if sq < 0:
                return 0
            if self.n:
                self.seq = sq
                return self.n


class RingJournal(JournalBase):
    def __init__(self, bdev):
        JournalBase.__init__(self)
        self.bdev = bdev
        bs = bdev.ioctl(5, 0) or 512
        self._bpsec = SECTOR // bs          # device blocks per sector
        self.nsec = bdev.ioctl(4, 0) // self._bpsec
        if self.nsec < 3:
            raise ValueError("journal partition smaller than 3 sectors")
        self.capacity_bytes = self.nsec * (SECTOR - SEC_HDR)
        self.cur_sec = 0
        self.cur_off = SEC_HDR
        self.oldest = 0
        self.last_serial = 0
        self.last_n = 0
        self.recycled = 0          # sectors with data erased to make room (readers watch it)
        self._broken = False
        self._torn_seen = -1
        self._sh = bytearray(SEC_HDR)
        self._rec = bytearray(_MAX_REC)
        mv = memoryview(self._rec)
        self._views = [mv[:k * _ALIGN] for k in range(_MAX_REC // _ALIGN + 1)]
        self._hv = mv[:HDR_BYTES]

    # ------------------------------------------------------------ device access
    def _rd(self, sec, off, buf):
        b = sec * self._bpsec + off // (SECTOR // self._bpsec)
        self.bdev.readblocks(b, buf, off % (SECTOR // self._bpsec))

    def _wr(self, sec, off, buf):
        b = sec * self._bpsec + off // (SECTOR // self._bpsec)
        self.bdev.writeblocks(b, buf, off % (SECTOR // self._bpsec))

    def _erase(self, sec):
        for k in range(self._bpsec):
            self.bdev.ioctl(6, sec * self._bpsec + k)

    def _sector_header(self, sec):
        """The sector's serial, or -1 (erased, never started, or a torn header)."""
        h = self._sh
        self._rd(sec, 0, h)
        if h[0] != 0xE5 or h[1] != 0x4A or h[2] != 1:
            return -1
        if crc16(h, 0, 12) != (h[12] | (h[13] << 8)):
            return -1
        return u32(h, 4)

    def read_record(self, sec, off, buf):
        """seq of the record at (sec, off) with its payload copied into buf (if given); -1 at
        erased flash (the end), -2 for a torn or garbled record. last_n = its payload length."""
        if off + _ALIGN > SECTOR:
            return -1
        r = self._rec
        hv = self._hv
        self._rd(sec, off, hv)
        if r[0] == 0xFF:
            return -1
        n = r[1]
        if r[0] != MAGIC or off + padded(n) > SECTOR:
            return -2
        v = self._views[padded(n) // _ALIGN]
        self._rd(sec, off, v)
        crc = crc16(r, 1, HDR_BYTES + n)
        if crc != (r[HDR_BYTES + n] | (r[HDR_BYTES + n + 1] << 8)):
            return -2
        if buf is not None:
            for i in range(n):
                buf[i] = r[HDR_BYTES + i]
        self.last_n = n
        return u32(r, 2)

    def note_torn(self, serial):
        if self._torn_seen != serial:
            self._torn_seen = serial
            self.torn_tails += 1

    def sector_serial(self, sec):
        return self._sector_header(sec)

    def live(self, sec):
        """Is `sec` between the oldest sector and the current one, in ring order?"""
        return (sec - self.oldest) % self.nsec <= (self.cur_sec - self.oldest) % self.nsec

    def first_seq_of(self, sec):
        """seq of the first record of a sector, or -1."""
        if self._sector_header(sec) < 0:
            return -1
        sq = self.read_record(sec, SEC_HDR, None)
        return sq if sq >= 0 else -1

    # ------------------------------------------------------------ opening / recovery
    def open(self):
        """Recover the ring's state from the flash (boot only: firmware/ringopen.py, loaded
        for it and dropped after)."""
        from .compat import cold
        return cold("ringopen").open(self)

    def _start_sector(self, sec):
        """Erase `sec` (dropping what it held) and write its header."""
        if sec == self.oldest and sec != self.cur_sec and self._sector_header(sec) >= 0:
            # the ring is full: this sector holds the oldest records, from its first seq up
            # to the first seq of the sector after it
            nxt = (sec + 1) % self.nsec
            lo = self.first_seq_of(sec)
            hi = self.first_seq_of(nxt) if nxt != self.cur_sec or self.cur_off > SEC_HDR \
                else -1
            if hi < 0:
                hi = self.next_seq
            if lo >= 0:
                self._count_dropped(lo, hi)
            self.oldest = nxt
            self.recycled += 1
        elif sec == self.oldest and sec != self.cur_sec:
            self.oldest = (sec + 1) % self.nsec
        self._erase(sec)
        self.last_serial += 1
        h = self._sh
        for i in range(SEC_HDR):
            h[i] = 0xFF
        h[0] = 0xE5
        h[1] = 0x4A
        h[2] = 1
        s = self.last_serial
        h[4] = s & 0xFF
        h[5] = (s >> 8) & 0xFF
        h[6] = (s >> 16) & 0xFF
        h[7] = s >> 24
        c = crc16(h, 0, 12)
        h[12] = c & 0xFF
        h[13] = c >> 8
        self._wr(sec, 0, h)
        self.cur_sec = sec
        self.cur_off = SEC_HDR
        self.bytes_written += SEC_HDR

    # ------------------------------------------------------------ appending
    def _write(self, buf, n, seq):
        size = padded(n)
        if self._broken or self.cur_off + size > SECTOR:
            self._broken = True
            self._start_sector((self.cur_sec + 1) % self.nsec)
            self._broken = False
        self._header(n, seq, buf)
        r = self._rec
        h = self._h
        for i in range(HDR_BYTES):
            r[i] = h[i]
        for i in range(n):
            r[HDR_BYTES + i] = buf[i]
        r[HDR_BYTES + n] = self._c[0]
        r[HDR_BYTES + n + 1] = self._c[1]
        for i in range(REC_OVERHEAD + n, size):
            r[i] = 0xFF
        try:
            self._wr(self.cur_sec, self.cur_off, self._views[size // _ALIGN])
        except OSError:
            self._broken = True
            self.write_errors += 1
            raise
        self.cur_off += size
        self.bytes_written += size

    def reader(self):
        return RingReader(self)

    def segments(self):
        """Sectors holding records (for the status message)."""
        return (self.cur_sec - self.oldest) % self.nsec + 1

    def close(self):
        pass
