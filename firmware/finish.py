# The end of a patrol that has a planned end (a simulated patrol's run_until, a bench test):
# wait until the gateway has acknowledged every sample (up to the board's drain timeout), log the
# run's totals, let the uplink say its last words, close the journal and record a clean stop in
# state.json. A box on a vehicle never gets here (it samples until the power goes); the module is
# loaded only then (compat.cold), so its bytecode is not resident while the box works.

import asyncio

from .compat import ticks_diff


async def wait(board, cond, limit_ms):
    """Until cond() is false or limit_ms has passed; the watchdog fed meanwhile (sampling has
    ended on purpose: the watchdog is not for this)."""
    t0 = board.wall_ms()
    while cond() and ticks_diff(board.wall_ms(), t0) < limit_ms:
        board.wdt_feed()
        await asyncio.sleep_ms(50)


async def finish(app, tasks, up):
    b = app.board
    j = app.journal
    s = app.sampler
    u = app.uplink
    u.done = True
    s.wake.set()
    await wait(b, j.depth, b.drain_timeout_ms)
    b.log("done: samples=%d seq=%d..%d unacked=%d dropped=%d torn=%d reconnects=%d "
          "late_slots=%d batches=%d batch_samples=%d live=%d acks=%d resends=%d "
          "journal_bytes=%d journal_failures=%d"
          % (s.samples, app.seq_first, j.next_seq - 1, j.depth(), j.dropped,
             j.torn_tails, u.reconnects, s.late_slots, u.batches, u.batch_samples,
             u.live_sent, u.acks, u.resends, j.bytes_written, s.journal_failures))
    fs = getattr(b, "flash_stats", None)
    if fs is not None and fs() is not None:
        b.log("flash: programmed=%d erases=%d ops=%d" % fs())
    # the uplink's last words (a mark, DISCONNECT): up to 5 s
    await wait(b, lambda: not up.done(), 5000)
    s.done = True
    for t in tasks:
        t.cancel()
    j.close()
    st = app.state.d
    st["clean"] = True
    st["seq_next"] = j.next_seq
    st["dropped"] = app.dropped_before + j.dropped
    app.state.save()
