"""envbox-gateway: the operator's command.

  envbox-gateway run [--config F]            run the daemon (SIGTERM/SIGINT: clean stop, exit 0)
  envbox-gateway status [--config F] [--json]
                                             per device: expected, received, missing seq ranges,
                                             dead-lettered; spool depth. Reads the spool file, so it
                                             works while the daemon runs.
  envbox-gateway check-config [--config F]   validate and print the effective config (secrets ***)
  envbox-gateway dead-letters list [--limit N] [--source ingest|sink] [--json]
  envbox-gateway dead-letters requeue (--all | ID...)
                                             move dead letters back into the spool if they now
                                             pass validation (e.g. after fixing the database)

The config file defaults to $ENVBOX_GW_CONFIG, else /etc/envbox/gateway.toml if it exists, else
built-in defaults; ENVBOX_GW_<SECTION>_<KEY> variables override it. Exit codes: 0 ok, 1 runtime
failure, 2 configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone

from . import config as gwconfig

DEFAULT_CONFIG = "/etc/envbox/gateway.toml"
log = logging.getLogger("envbox.gateway")


def _config_path(arg):
    if arg:
        return arg
    if os.environ.get("ENVBOX_GW_CONFIG"):
        return os.environ["ENVBOX_GW_CONFIG"]
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def sd_notify(state: str) -> bool:
    """systemd's notify protocol (sd_notify(3)): one datagram to $NOTIFY_SOCKET."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]       # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def _watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2       # ping at half the deadline, as sd_watchdog_enabled advises


def cmd_run(cfg) -> int:
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("signal %d: stopping", signum)
        stop.set()

    # Before the heavy imports: a SIGTERM while starting is a clean stop too.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from .daemon import Gateway
    gw = Gateway(cfg)
    if stop.is_set():
        return 0
    gw.start()
    sd_notify("READY=1\nSTATUS=running")
    wd = _watchdog_interval_s()
    tick = min(wd, 5.0) if wd else 5.0
    while not stop.wait(tick):
        if not gw.alive():
            # A dead worker thread: exit non-zero so systemd restarts us (Restart=on-failure);
            # nothing acknowledged is lost, the broker redelivers the rest.
            log.critical("a gateway thread died; exiting for a restart")
            sd_notify("STATUS=thread died")
            gw.stop()
            return 1
        if wd:
            sd_notify("WATCHDOG=1")
        st = gw.stats()
        sd_notify(f"STATUS=spool {st['spool_depth']} rows, written {st['written']}, "
                  f"mqtt {'up' if st['mqtt_connected'] else 'down'}")
    sd_notify("STOPPING=1")
    gw.stop()
    return 0


def _fmt_t(t):
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ranges_text(ranges, limit=8):
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"... (+{len(ranges) - limit} more)")
    return ",".join(parts) if parts else "-"


def _open_spool(cfg):
    from .spool import Spool
    return Spool(cfg.spool.path, create=False, **gwconfig.spool_kwargs(cfg.spool))


def cmd_status(cfg, as_json: bool) -> int:
    try:
        sp = _open_spool(cfg)
    except FileNotFoundError as e:
        print(f"envbox-gateway: {e}", file=sys.stderr)
        return 1
    devs = sp.device_status()
    out = {"spool_path": cfg.spool.path, "spool_depth": sp.count_rows(),
           "dead_letters": sp.dead_letter_count(), "counters": sp.counters(), "devices": devs}
    if as_json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"spool {cfg.spool.path}: {out['spool_depth']} samples waiting, "
          f"{out['dead_letters']} dead letters")
    c = out["counters"]
    print(f"written {c.get('written', 0)}, dropped oldest {c.get('dropped_oldest', 0)}, "
          f"dead-lettered at ingest {c.get('dead_lettered_ingest', 0)}, "
          f"by the database {c.get('dead_lettered_sink', 0)}, "
          f"dead letters dropped {c.get('dead_letters_dropped', 0)}")
    hdr = ("device", "expected", "received", "missing", "dead", "spooled", "written", "dups",
           "last sample", "missing seq ranges")
    rows = [hdr] + [(d["device"], d["expected"], d["received"], d["missing"], d["dead_lettered"],
                     d["in_spool"], d["written"], d["duplicates"], _fmt_t(d["last_t_utc_s"]),
                     _ranges_text(d["missing_ranges"])) for d in devs]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(hdr) - 1)]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[-1]))
    return 0


def cmd_check_config(cfg, path) -> int:
    print(f"config {path or '(built-in defaults)'}: OK")
    for w in gwconfig.warnings(cfg):
        print(f"warning: {w}")
    for sec in gwconfig.SECTIONS:
        print(f"{repr(getattr(cfg, sec))}")
    return 0


def cmd_dead_letters(cfg, args) -> int:
    try:
        sp = _open_spool(cfg)
    except FileNotFoundError as e:
        print(f"envbox-gateway: {e}", file=sys.stderr)
        return 1
    if args.dl_cmd == "list":
        rows = sp.dead_letters(limit=args.limit, source=args.source)
        if args.json:
            for r in rows:
                r["payload"] = r["payload"].hex()
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            print(f"#{r['id']} {_fmt_t(r['created_at'])} {r['source']} "
                  f"device={r['device'] or '-'} seq={r['seq'] if r['seq'] is not None else '-'} "
                  f"topic={r['topic'] or '-'}\n    reason: {r['reason']}")
            if r["server_answer"]:
                print(f"    server: {r['server_answer'][:300]}")
            print(f"    payload: {r['payload'][:64].hex()}{'...' if len(r['payload']) > 64 else ''}")
        print(f"{len(rows)} shown, {sp.dead_letter_count()} in total")
        return 0
    # requeue
    from .ingest import check_message
    if not args.all and not args.ids:
        print("envbox-gateway: give dead-letter ids or --all", file=sys.stderr)
        return 2
    idx = cfg.mqtt.device_index()

    def check(topic, payload, source):
        v = check_message(topic, payload, idx, time.time(), cfg.ingest.max_future_s)
        return v.reason if hasattr(v, "reason") else v

    moved, kept = sp.requeue(None if args.all else args.ids, check)
    print(f"requeued {moved}; kept {len(kept)}")
    for i, why in kept[:50]:
        print(f"  #{i}: {why}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="envbox-gateway", description=__doc__.split("\n")[0])
    ap.add_argument("--config", "-c", help="TOML file (default: $ENVBOX_GW_CONFIG or "
                                           f"{DEFAULT_CONFIG})")
    ap.add_argument("--log-level", default=os.environ.get("ENVBOX_GW_LOG_LEVEL", "INFO"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run the gateway")
    p_st = sub.add_parser("status", help="per-device completeness and spool depth")
    p_st.add_argument("--json", action="store_true")
    p_cc = sub.add_parser("check-config", help="validate the configuration")
    p_dl = sub.add_parser("dead-letters", help="list or requeue dead letters")
    dl_sub = p_dl.add_subparsers(dest="dl_cmd", required=True)
    p_list = dl_sub.add_parser("list")
    p_list.add_argument("--limit", type=int, default=50)
    p_list.add_argument("--source", choices=("ingest", "sink"))
    p_list.add_argument("--json", action="store_true")
    p_rq = dl_sub.add_parser("requeue")
    p_rq.add_argument("--all", action="store_true")
    p_rq.add_argument("ids", nargs="*", type=int)
    # --config after the sub-command too (`envbox-gateway run --config F`)
    for p in (p_run, p_st, p_cc, p_dl, p_list, p_rq):
        p.add_argument("--config", "-c", dest="config_sub", default=None,
                       help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = _config_path(getattr(args, "config_sub", None) or args.config)
    try:
        cfg = gwconfig.load(path)
    except gwconfig.ConfigError as e:
        print(f"envbox-gateway: configuration error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "run":
        return cmd_run(cfg)
    if args.cmd == "status":
        return cmd_status(cfg, args.json)
    if args.cmd == "check-config":
        return cmd_check_config(cfg, path)
    return cmd_dead_letters(cfg, args)


if __name__ == "__main__":
    sys.exit(main())
