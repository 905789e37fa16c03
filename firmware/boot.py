# The box's boot bookkeeping, run once when the app is built and then unloaded (compat.cold):
# the state directory, the boot counter and reset cause in state.json, the journal opened and its
# seq continued, the configuration (a persisted remote config, else the defaults with the
# board's period), and the boot line in the log.

import os


def prepare(b, state_cls):
    """Returns (state, reset cause, journal, config path, the configuration dict to apply)."""
    sd = b.state_dir
    try:
        os.mkdir(sd)
    except OSError:
        pass
    state = state_cls(sd + "/state.json")
    st = state.d
    st["boot"] += 1
    cause = b.reset_cause()
    if cause is None:
        cause = "power_on" if st["clean"] else "power_loss_or_crash"
    j = b.open_journal()
    j.start_seq(st["seq_next"])
    st["seq_next"] = j.next_seq
    st["clean"] = False
    state.save()
    cfg_path = sd + "/config.json"
    from .compat import cold
    cfg = cold("config").load(cfg_path)
    try:
        os.stat(cfg_path)
    except OSError:
        cfg["period_s"] = b.period_s
    return state, cause, j, cfg_path, cfg


def log_boot(app):
    b = app.board
    j = app.journal
    b.log("boot %d reset_cause=%s journal %s next_seq=%d released=%d depth=%d torn=%d "
          "capacity=%d" % (app.state.d["boot"], app.reset_cause, j.__class__.__name__,
                           j.next_seq, j.released, j.depth(), j.torn_tails, j.capacity_bytes))
