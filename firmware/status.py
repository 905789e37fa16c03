# The health message, built once a minute (docs/firmware.md, "Status"). A module of its own that
# app._cold() loads for each use and unloads after: its bytecode would otherwise sit in the heap
# between uses.

import gc
import json

from . import wire
from .compat import ticks_diff


def status_json(app):
    """The health message (every minute, QoS 0, not retained: the retained value of the
    status topic stays `online`/`offline`)."""
    before = gc.mem_alloc()      # live + garbage since the last collection: near the peak
    gc.collect()
    b = app.board
    j = app.journal
    sens = {}
    for d in app.sensors:
        name = d.__class__.__name__
        if name in sens:
            name = "%s_%d" % (name, len(sens))
        sens[name] = {"ok": getattr(d, "frames_ok", 0),
                      "checksum": getattr(d, "checksum_errors", 0),
                      "timeout": getattr(d, "timeouts", 0)}
    g = app.gnss
    sens["gnss"] = {"ok": g.sentences_ok, "checksum": g.checksum_errors,
                    "fixes": g.fixes}
    doc = {
        "t_utc_s": (app.clock.now_s() + wire.EPOCH_2020_UNIX_S) if app.clock.known()
        else None,
        "clock": ("gnss", "ntp")[app.clock.source - 1] if app.clock.known() else "none",
        "boot": app.state.d["boot"],
        "uptime_s": ticks_diff(b.ticks_ms(), app.start_ms) // 1000,
        "reset_cause": app.reset_cause,
        "heap_free_bytes": gc.mem_free(),
        "heap_used_bytes": gc.mem_alloc(),          # live, after a collection
        "heap_before_gc_bytes": before,
        "journal_depth": j.depth(),
        "journal_dropped": j.dropped + app.dropped_before,
        "journal_torn_tails": j.torn_tails,
        "journal_write_errors": j.write_errors,
        "journal_bytes_written": j.bytes_written,
        "journal_segments": j.cur_seg - j.first_seg + 1,
        "held_before_clock": app.held,
        "hold_dropped": app.hold_dropped,
        "samples": app.samples,
        "late_slots": app.late_slots,
        "cycle_errors": app.cycle_errors,
        "reconnects": app.reconnects,
        "batches": app.batches,
        "config_version": app.cfg.version,
        "period_s": app.period_s,
        "sensors": sens,
    }
    rssi = b.rssi_dbm()
    if rssi is not None:
        doc["rssi_dbm"] = rssi
    return json.dumps(doc)
