"""Rate-limited warnings: a flood of bad input must not become a flood of log lines (a box
sending garbage 1,000 times a second would fill the journal and hide everything else).

    warn = RateLimited(log, per_s=10.0, burst=5)
    warn("dead letter", "dead letter from %s: %s", topic, reason)

Per key, at most `burst` lines every `per_s` seconds; what is held back is counted and reported
with the next line of that key ("... (37 more like this in the last 10 s)"), and by flush().
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimited:
    def __init__(self, logger: logging.Logger, per_s: float = 10.0, burst: int = 5,
                 level: int = logging.WARNING, clock=time.monotonic):
        self.log = logger
        self.per_s = per_s
        self.burst = burst
        self.level = level
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}    # key -> [window start, lines in it, held back]
        self.suppressed_total = 0

    def __call__(self, key: str, msg: str, *args) -> bool:
        """Log msg % args unless `key` had `burst` lines in this window; True if logged."""
        now = self.clock()
        with self._lock:
            st = self._state.get(key)
            if st is None:
                if len(self._state) > 1000:         # keys are categories; bound them anyway
                    self._state.clear()
                st = self._state[key] = [now, 0, 0]
            held = 0
            if now - st[0] >= self.per_s:
                held = st[2]
                st[0], st[1], st[2] = now, 0, 0
            if st[1] >= self.burst:
                st[2] += 1
                self.suppressed_total += 1
                return False
            st[1] += 1
        if held:
            self.log.log(self.level, msg + " (%d more like this held back in the last %.0f s)",
                         *args, held, self.per_s)
        else:
            self.log.log(self.level, msg, *args)
        return True

    def flush(self) -> None:
        """Report every count still held back."""
        with self._lock:
            pending = [(k, st[2]) for k, st in self._state.items() if st[2]]
            for k, _n in pending:
                self._state[k][2] = 0
        for k, n in pending:
            self.log.log(self.level, "%d more '%s' lines were held back", n, k)
