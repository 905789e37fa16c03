# The flash journal under MicroPython: recovery after a cut at every byte of a record, garbled
# tails, a full journal, the release cursor, and an append that allocates nothing.
import os

import micropython
import mptest
from firmware import journal as J

_N = 0


def _dir():
    global _N
    _N += 1
    d = "/tmp/envbox-mptest-journal-%d-%d" % (os.getpid() if hasattr(os, "getpid") else 0, _N)
    _rm(d)
    return d


def _rm(d):
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)
    except OSError:
        pass


def _payload(i, n=40):
    b = bytearray(n)
    for k in range(n):
        b[k] = (i * 7 + k) & 0xFF
    return b


def _read_all(j):
    r = J.Reader(j)
    r.seek_seq(0)
    buf = bytearray(255)
    out = []
    while True:
        n = r.read(buf)
        if not n:
            break
        out.append((r.seq, bytes(buf[:n])))
    r.close()
    return out


def _segs(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".jnl"))


def test_append_reopen_reads_everything_back_in_order():
    d = _dir()
    j = J.Journal(d, seg_bytes=1000, max_segs=50).open()
    for i in range(60):
        mptest.eq(j.append(_payload(i), 40), i)
    j.close()
    j2 = J.Journal(d, seg_bytes=1000, max_segs=50).open()
    mptest.eq(j2.next_seq, 60)
    got = _read_all(j2)
    mptest.eq([s for s, _ in got], list(range(60)))
    for s, p in got:
        mptest.eq(p, bytes(_payload(s)))
    mptest.true(len(_segs(d)) > 2, "records span several segments")
    j2.close()
    _rm(d)


def test_cut_at_every_byte_of_the_last_record_loses_only_that_record():
    d = _dir()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    for i in range(5):
        j.append(_payload(i), 40)
    j.close()
    path = d + "/" + _segs(d)[-1]
    with open(path, "rb") as f:
        full = f.read()
    rec = J.REC_OVERHEAD + 40
    good = full[:len(full) - rec]
    for cut in range(1, rec):
        with open(path, "wb") as f:
            f.write(full[:len(good) + cut])
        for n in _segs(d):
            if d + "/" + n != path:
                os.remove(d + "/" + n)
        j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
        got = _read_all(j)
        mptest.eq([s for s, _ in got], [0, 1, 2, 3], "cut at %d" % cut)
        mptest.eq(j.torn_tails, 1)
        mptest.eq(j.next_seq, 4, "the torn record's seq is reused, nothing skipped")
        # appending continues in a fresh segment, never behind the garbage
        j.append(_payload(99), 40)
        j.close()
        j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
        got = _read_all(j)
        mptest.eq([s for s, _ in got], [0, 1, 2, 3, 4])
        mptest.eq(got[-1][1], bytes(_payload(99)))
        j.close()
    _rm(d)


def test_garbled_tail_is_skipped_never_misread():
    d = _dir()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    for i in range(5):
        j.append(_payload(i), 40)
    j.close()
    path = d + "/" + _segs(d)[-1]
    with open(path, "rb") as f:
        full = bytearray(f.read())
    rec = J.REC_OVERHEAD + 40
    # flip one byte in each position of the last record in turn: a CRC catches every one
    for pos in range(len(full) - rec, len(full)):
        g = bytearray(full)
        g[pos] ^= 0x5A
        with open(path, "wb") as f:
            f.write(g)
        for n in _segs(d):
            if d + "/" + n != path:
                os.remove(d + "/" + n)
        j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
        got = _read_all(j)
        mptest.eq([s for s, _ in got], [0, 1, 2, 3], "flip at %d" % pos)
        for s, p in got:
            mptest.eq(p, bytes(_payload(s)))
        j.close()
    # random garbage appended after good records
    with open(path, "wb") as f:
        f.write(full)
        f.write(mptest.rand_bytes(37))
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    mptest.eq([s for s, _ in _read_all(j)], [0, 1, 2, 3, 4])
    mptest.eq(j.torn_tails, 1)
    j.close()
    _rm(d)


def test_full_journal_drops_oldest_and_counts_them():
    d = _dir()
    rec = J.REC_OVERHEAD + 40
    j = J.Journal(d, seg_bytes=rec * 10, max_segs=3).open()   # 10 records a segment
    for i in range(45):
        j.append(_payload(i), 40)
    mptest.true(len(_segs(d)) <= 3, "bounded: %r" % (_segs(d),))
    got = [s for s, _ in _read_all(j)]
    mptest.eq(got, list(range(got[0], 45)))
    mptest.eq(j.dropped, got[0], "every record not on flash any more was counted")
    mptest.eq(j.released, got[0])
    mptest.eq(j.depth(), 45 - got[0])
    j.close()
    _rm(d)


def test_released_records_are_not_resent_after_reboot():
    d = _dir()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    for i in range(10):
        j.append(_payload(i), 40)
    j.release(7)          # PUBACKs for 0..6
    j.append(_payload(10), 40)   # carries released=7 to flash
    j.release(9)          # acknowledged after the last append: not on flash yet
    j.close()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    mptest.eq(j.released, 7)
    mptest.eq(j.next_seq, 11)
    r = J.Reader(j)
    r.seek_seq(j.released)
    buf = bytearray(255)
    seqs = []
    while r.read(buf):
        seqs.append(r.seq)
    mptest.eq(seqs, [7, 8, 9, 10])
    # a mark persists the cursor without a sample and does not use up a seq
    j.release(11)
    j.mark()
    j.close()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    mptest.eq(j.released, 11)
    mptest.eq(j.next_seq, 11)
    mptest.eq(j.depth(), 0)
    j.close()
    _rm(d)


def test_fully_released_segments_are_deleted_at_rotation():
    d = _dir()
    rec = J.REC_OVERHEAD + 40
    j = J.Journal(d, seg_bytes=rec * 5, max_segs=10).open()
    for i in range(40):
        j.append(_payload(i), 40)
        j.release(i + 1)
    mptest.true(len(_segs(d)) <= 2, "%r" % (_segs(d),))
    mptest.eq(j.dropped, 0)
    j.close()
    _rm(d)


def test_append_allocates_nothing():
    d = _dir()
    j = J.Journal(d, seg_bytes=100000, max_segs=4).open()
    p = _payload(1)
    j.append(p, 40)
    micropython.heap_lock()
    try:
        for i in range(20):
            j.append(p, 40)
            j.release(i)
    finally:
        micropython.heap_unlock()
    j.close()
    _rm(d)


class _FailingFile:
    """Writes the first k bytes of a record, then fails like a full flash."""

    def __init__(self, f, k):
        self.f = f
        self.k = k

    def write(self, b, n=None):
        n = len(b) if n is None else n
        if self.k <= 0:
            raise OSError(28)   # ENOSPC
        take = n if n < self.k else self.k
        self.f.write(b, take)
        self.k -= take
        if take < n:
            raise OSError(28)
        return take

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def test_a_failed_write_never_leaves_good_records_behind_garbage():
    d = _dir()
    j = J.Journal(d, seg_bytes=100000, max_segs=8).open()
    for i in range(3):
        j.append(_payload(i), 40)
    j._f = _FailingFile(j._f, 17)          # part of the next record reaches the flash
    mptest.raises(OSError, j.append, _payload(3), 40)
    mptest.eq(j.write_errors, 1)
    for i in range(3, 6):                   # the flash works again
        j.append(_payload(i), 40)
    j.close()
    j = J.Journal(d, seg_bytes=100000, max_segs=8).open()
    got = _read_all(j)
    mptest.eq([s for s, _ in got], [0, 1, 2, 3, 4, 5])
    mptest.eq(got[3][1], bytes(_payload(3)))
    j.close()
    _rm(d)


def test_crc16_known_answer():
    # CRC-16/CCITT-FALSE check value of "123456789" (the catalogue's check)
    mptest.eq(J.crc16(b"123456789", 0, 9), 0x29B1)


mptest.main(globals())
