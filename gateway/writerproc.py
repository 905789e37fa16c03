"""The writer in a process of its own ([sink] writer_process = true, the default).

Why: the gateway's ingest and writer are Python threads under one GIL, so together they use at
most one core. Profiled on catch-up batches, ingest alone spools 24,000-32,000 samples/s but the
writer, building line protocol on the same GIL, holds the end-to-end rate at 16,000-18,000/s. In
a process of its own the writer gets its own GIL (and core, when one is free).

How: the child is forked before ingest starts (no paho thread exists yet to be copied mid-lock)
and opens its own connection to the same SQLite spool (WAL: the writer's reads never block
ingest's commits; SQLite connections must not cross a fork, so the parent's is never used in
the child). Nothing else changes on disk: rows leave the spool only after a 2xx, as before.
The parent sees the writer through shared memory: its counters (written, write_requests, ...),
the rows it removed (so the parent's spool depth stays right), and its gauges (last 2xx, failing
since, last error) copied every WRITER_STATE_PERIOD_S.

Lifetime: SIGTERM of the gateway stops ingest first, then sets the child's stop event; the child
finishes the write in flight and exits (as the writer thread did). A SIGTERM sent to the whole
process group (systemd's KillMode=control-group) does the same in the child. If the parent dies
(SIGKILL), the kernel kills the child at once (PR_SET_PDEATHSIG), so a SIGKILL still stops the
whole gateway at one instant, and no orphaned writer races the next gateway's. (The kernel
sends that signal when the *thread* that forked exits: start the Gateway from a thread that
lives as long as it, as `envbox-gateway run` does from its main thread. In a process that
already runs other threads, e.g. a test holding several gateways, a fork copies their locks
as they are; the daemon forks before any of its threads start.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import os
import signal
import threading

from .config import Config, spool_kwargs
from .metrics import Counters

log = logging.getLogger("envbox.gateway.writer")

# The counters only the writer adds to (dead_lettered is also added to by ingest: the parent
# sums both).
WRITER_COUNTERS = ("written", "write_requests", "retried", "bisections", "dead_lettered",
                   "dead_lettered_sink")
WRITER_STATE_PERIOD_S = 0.1
_ERR_BYTES = 1000
# shared gauges: rows removed from the spool, last 2xx (Unix s), failing since (Unix s, -1 none)
_REMOVED, _LAST_OK, _FAILING = range(3)


class _SharedCounters(Counters):
    """The child's Counters: every add goes to the shared array the parent reads."""

    def __init__(self, arr):
        super().__init__()
        self._arr = arr
        self._idx = {n: i for i, n in enumerate(WRITER_COUNTERS)}

    def add(self, name: str, n: int = 1) -> None:
        i = self._idx.get(name)
        if i is None:
            super().add(name, n)
        elif n:
            with self._arr.get_lock():
                self._arr[i] += n


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL): the kernel kills us when the parent dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG unavailable: the writer process relies on polling its "
                    "parent")


def _child_main(cfg: Config, sink, counts, gauges, err, stop_evt, parent_pid: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_a: stop_evt.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C reaches the parent, which stops us
    _die_with_parent()
    if os.getppid() != parent_pid:     # the parent died before prctl took effect
        return
    from .spool import Spool
    from .writer import Writer
    s = cfg.spool
    spool = Spool(s.path, **spool_kwargs(s))

    def removed(n: int) -> None:
        with gauges.get_lock():
            gauges[_REMOVED] += n
    spool.on_removed = removed
    w = Writer(cfg, spool, _SharedCounters(counts), sink=sink)

    def publish_state() -> None:
        # copies the writer's gauges for the parent's /healthz and /metrics; also the fallback
        # for a kernel without PR_SET_PDEATHSIG
        while not w._stop.is_set():
            gauges[_LAST_OK] = w.last_success_s or 0.0
            gauges[_FAILING] = -1.0 if w.failing_since_s is None else w.failing_since_s
            e = (w.last_error or "").encode("utf-8", "replace")[:_ERR_BYTES - 1]
            err.value = e
            if stop_evt.wait(WRITER_STATE_PERIOD_S) or os.getppid() != parent_pid:
                w._stop.set()
    threading.Thread(target=publish_state, name="gw-writer-state", daemon=True).start()
    try:
        w._run()
    finally:
        w._stop.set()
        try:
            w.sink.close()
        except Exception:  # noqa: BLE001
            pass
        spool.close()


class WriterProcess:
    """The parent's handle on the writer process; the attributes Gateway reads from a Writer."""

    def __init__(self, cfg: Config, spool, counters: Counters, sink=None):
        self.cfg = cfg
        ctx = mp.get_context("fork")
        self._counts = ctx.Array("q", len(WRITER_COUNTERS))
        self._gauges = ctx.Array("d", 3)
        self._gauges[_FAILING] = -1.0
        self._err = ctx.Array("c", _ERR_BYTES)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_child_main, name="gw-writer",
                                 args=(cfg, sink, self._counts, self._gauges, self._err,
                                       self._stop, os.getpid()), daemon=True)
        counters.attach(WRITER_COUNTERS, self._counts)
        spool.removed_elsewhere = lambda: int(self._gauges[_REMOVED])

    def start(self) -> None:
        self._proc.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the write in flight (a back-off wait is cut short), then return."""
        self._stop.set()
        if self._proc.pid is None:
            return
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.error("writer process did not stop in %.0f s; killing it", timeout)
            self._proc.kill()
            self._proc.join(5)

    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def last_success_s(self) -> float | None:
        return self._gauges[_LAST_OK] or None

    @property
    def failing_since_s(self) -> float | None:
        v = self._gauges[_FAILING]
        return None if v < 0 else v

    @property
    def last_error(self) -> str | None:
        return self._err.value.decode("utf-8", "replace") or None
