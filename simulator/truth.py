"""Ground truth of a simulation run (docs/contracts.md, "Ground truth"): what every simulated
sensor reported and when, so tests can compare the firmware's samples with it."""

import json
import threading


class GroundTruth:
    """ground_truth.jsonl writer: one JSON object per line, appended and flushed as it happens.

    Thread-safe (every model thread writes here). counts[kind] says how many records of each kind
    were written, so callers can wait for records without re-reading the file.
    """

    def __init__(self, path):
        self.path = str(path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.counts = {}

    def record(self, obj):
        line = json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            if self._f is None:
                return
            self._f.write(line)
            self._f.flush()
            k = obj.get("kind")
            self.counts[k] = self.counts.get(k, 0) + 1

    def close(self):
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def read_ground_truth(path, kind=None):
    """All records of ground_truth.jsonl (of one kind if given); a torn last line is skipped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if kind is None or obj.get("kind") == kind:
                out.append(obj)
    return out
