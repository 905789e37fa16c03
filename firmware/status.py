# The health message, built once a minute (docs/firmware.md, "Status"). A module of its own that
# app._cold() loads for each use and unloads after: its bytecode would otherwise sit in the heap
# between uses.

import gc
import json

from . import wire
from .clock import SOURCE_NAMES
from .compat import ticks_diff


def _oldest_unacked_age_s(app):
    """Age of the oldest sample no gateway has acknowledged (reads its record)."""
    j = app.journal
    clock = app.clock
    if not j.depth() or not clock.known():
        return None
    r = j.reader()
    r.seek_seq(j.released)
    buf = bytearray(wire.MAX_SAMPLE_BYTES)
    n = r.read(buf)
    r.close()
    if not n:
        return None
    s = wire.Sample(app.device)
    wire.decode_into(s, buf, n)
    return clock.now_s() - s.t_s2020


def status_json(app):
    """The health message (every minute, QoS 0, not retained: the retained value of the
    status topic stays `online`/`offline`)."""
    before = gc.mem_alloc()      # live + garbage since the last collection: near the peak
    gc.collect()
    b = app.board
    j = app.journal
    smp = app.sampler
    up = app.uplink
    sens = {}
    for d in b.sensors:
        name = d.__class__.__name__
        if name in sens:
            name = "%s_%d" % (name, len(sens))
        sens[name] = {"ok": getattr(d, "frames_ok", 0),
                      "checksum": getattr(d, "checksum_errors", 0),
                      "timeout": getattr(d, "timeouts", 0)}
    g = b.gnss
    sens["gnss"] = {"ok": g.sentences_ok, "checksum": g.checksum_errors,
                    "fixes": g.fixes}
    clk = app.clock
    doc = {
        # seconds since 2020 (a small integer on the box; add 1577836800 for Unix time)
        "t_s2020": clk.now_s() if clk.known() else None,
        # the time source in force, the one that first made the clock known and how long after
        # the boot (firmware/clock.py)
        "clock": SOURCE_NAMES[clk.source],
        "clock_first": SOURCE_NAMES[clk.first_source],
        "clock_first_s": (max(0, ticks_diff(clk.first_tick, app.start_ms)) // 1000
                          if clk.known() else None),
        "boot": app.state.d["boot"],
        "uptime_s": ticks_diff(b.ticks_ms(), app.start_ms) // 1000,
        "reset_cause": app.reset_cause,
        "heap_free_bytes": gc.mem_free(),
        "heap_used_bytes": gc.mem_alloc(),          # live, after a collection
        "heap_before_gc_bytes": before,
        "journal_store": j.__class__.__name__,
        "journal_capacity_bytes": j.capacity_bytes,
        "journal_depth": j.depth(),                 # journaled, not acknowledged by a gateway
        "journal_oldest_unacked_age_s": _oldest_unacked_age_s(app),
        "journal_released": j.released,
        "journal_dropped": j.dropped + app.dropped_before,
        "journal_torn_tails": j.torn_tails,
        "journal_write_errors": j.write_errors,
        "journal_failures": smp.journal_failures,
        "journal_bytes_written": j.bytes_written,
        "journal_segments": j.segments(),
        "held_before_clock": smp.held,               # on flash now, waiting for a time
        "held_stamped": smp.held_stamped,
        "hold_dropped": smp.hold_dropped,
        "held_lost_at_boot": smp.held_lost_at_boot,  # the previous boot ended before a time
        "samples": smp.samples,
        "late_slots": smp.late_slots,
        "cycle_errors": smp.cycle_errors,
        "reconnects": up.reconnects,
        "batches": up.batches,
        "acks": up.acks,
        "acks_bad": up.acks_bad,
        "resends": up.resends,
        "config_version": app.cfg.version,
        "period_s": app.period_s,
        "sensors": sens,
    }
    if up.insecure:
        doc["insecure"] = True
    if up.tls_clock_wait_ms >= 0:
        doc["tls_clock_wait_s"] = up.tls_clock_wait_ms // 1000
    link = b.link
    if link is not None:
        link.status_into(doc)       # "link": {kind, state, ups, drops, last_error, ...}
    rssi = b.rssi_dbm()
    if rssi is not None:
        doc["rssi_dbm"] = rssi
    return json.dumps(doc)
