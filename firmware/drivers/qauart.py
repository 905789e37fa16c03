# What the question-and-answer UART modules (Winsen ZE03/ZE08/MH-Z19B, Nova SDS011) share: the
# non-blocking read loop, the answer time-out, command writes that never raise, and dropping bytes
# from the front of the frame buffer. Each driver supplies _byte() (its frame assembler) and the
# attributes _uart, _rx (bytearray(_RX)), _f, _p, _pending, _req_t, timeout_ms and the counters.
# (A mixin: the type checker cannot see those attributes here.)
# pyright: reportAttributeAccessIssue=false

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from ..compat import ticks_diff

_RX = const(16)
_MAX_READS = const(16)    # chunks per poll (256 bytes): bounds the time spent in poll on a flooded line


class QAUART:
    def poll(self, now_ms):
        new = 0
        try:
            u = self._uart
            rx = self._rx
            for _ in range(_MAX_READS):
                if not u.any():
                    break
                k = u.readinto(rx, _RX)
                if not k:
                    break
                for i in range(k):
                    new += self._byte(rx[i])
        except Exception:  # a bus error must not escape into the sampler
            pass
        if self._pending and not self.ready() and ticks_diff(now_ms, self._req_t) > self.timeout_ms:
            self._pending = False
            self.timeouts += 1
        return new

    def _write(self, cmd):
        try:
            self._uart.write(cmd)
        except Exception:
            pass

    def _drop(self, k):
        f = self._f
        n = self._p - k
        for i in range(n):
            f[i] = f[i + k]
        self._p = n
        self.bytes_skipped += k
