# Opening the record ring (firmware/journal_ring.py) at boot: every sector's header is read for
# the newest (the head) and the oldest of this lap; the head's records are replayed for next_seq,
# the release cursor and the append position; a torn tail is never programmed over. Run once per
# boot, so it is a module of its own (compat.cold): its bytecode is not kept in the heap after.

from .journal import u32
from .journal_ring import SEC_HDR, SECTOR, padded


def open(j):
    best = -1
    top = -1
    for k in range(j.nsec):
        s = j._sector_header(k)
        if s > top:
            top = s
            best = k
    if best < 0:
        j._start_sector(0)
        j.oldest = 0
        return j
    j.last_serial = top
    # the oldest live sector: the first valid one after the head, in ring order, whose
    # serial belongs to this lap (a sector of an older lap was not erased since: stale)
    k = (best + 1) % j.nsec
    while k != best:
        s = j._sector_header(k)
        if s >= 0 and s > top - j.nsec:
            break
        k = (k + 1) % j.nsec
    j.oldest = k
    # replay the head sector: the last good record gives next_seq and the cursor
    last, released, off = _replay(j, best, -1, 0)
    j.cur_sec = best
    j.cur_off = off
    if last < 0 and best != j.oldest:
        # an empty head sector (cut right after it was started): the newest record is in
        # the sector before it
        last, released, _ = _replay(j, (best - 1) % j.nsec, last, released)
    if last >= 0:
        j.next_seq = last + 1
    j.acked.released = released if released <= j.next_seq else j.next_seq
    if not _rest_erased(j, best, off):
        # a torn record (or garbage) at the end: never program over it
        j.torn_tails += 1
        j._broken = True
    return j


def _replay(j, sec, last, released):
    """Read sector `sec`'s records from the first: (the last good record's seq, its released
    mark, the offset after it); `last` and `released` as given when it holds none."""
    off = SEC_HDR
    while True:
        sq = j.read_record(sec, off, None)
        if sq < 0:
            return last, released, off
        last = sq if j.last_n else sq - 1
        released = u32(j._rec, 6)
        off += padded(j.last_n)


def _rest_erased(j, sec, off):
    c = bytearray(64)          # (boot only)
    while off < SECTOR:
        k = SECTOR - off if SECTOR - off < len(c) else len(c)
        v = memoryview(c)[:k]
        j._rd(sec, off, v)
        for i in range(k):
            if c[i] != 0xFF:
                return False
        off += k
    return True
