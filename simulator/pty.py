"""Serve a serial model on a pseudo-terminal, as if the module were wired to a UART.

The firmware opens the slave path (os.ttyname) like a serial port. The simulator keeps its own
slave fd open for the whole run: with no slave open, Linux returns EIO on the master and the
path can disappear, so a firmware restart could not reopen it. The slave is put in raw mode
(no echo, no line editing, no CR/LF translation) because the traffic is binary.

One thread per device: it waits in select() for the firmware's bytes or for the model's next
output time, feeds input to model.receive() and writes model.due() output. Nothing a model does
with odd input may end the thread: exceptions are caught and counted (model_errors, last_error).

Bytes written while nobody reads the slave stay in the pty buffer (about 17 KiB on Linux); when it
is full the server discards the unread input (tcflush, counted in `overruns`), as a UART loses what
nobody reads. A firmware should still flush its receive buffer after opening the port.
"""

import logging
import os
import pty as _pty
import select
import termios
import threading
import time
import tty

log = logging.getLogger(__name__)

MAX_PENDING_BYTES = 65536
IDLE_WAIT_S = 0.5   # wall; upper bound of one select() so stop() is seen quickly anyway


class PtyServer:
    """Serve `model` (models.SerialModel) with virtual time from `clock` (clock.VirtualClock).

    path: the slave device to give the firmware (valid after __init__).
    lock: hold it to touch the model from another thread (e.g. model.inject(...)).
    counters: bytes_in, bytes_out, bytes_dropped, overruns, model_errors; last_error: repr or None.
    """

    def __init__(self, model, clock, name=None):
        self.model = model
        self.clock = clock
        self.name = name or model.name
        self.master_fd, self.slave_fd = _pty.openpty()
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.path = os.ttyname(self.slave_fd)
        self.lock = threading.RLock()
        self.counters = {"bytes_in": 0, "bytes_out": 0, "bytes_dropped": 0, "overruns": 0,
                         "model_errors": 0}
        self.last_error = None
        self._pending = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = None

    def start(self, t_power_on=None):
        """Power the model on at virtual t_power_on (default: now) and start serving."""
        with self.lock:
            self._guard(self.model.start, self.clock.now() if t_power_on is None else t_power_on)
        self._thread = threading.Thread(target=self._run, name="pty-" + self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5.0)
        for fd in (self.master_fd, self.slave_fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def poke(self):
        """Wake the serving thread: something outside receive() (a pin, a fault) changed the
        model's schedule, so its next output time must be asked again."""
        try:
            os.set_blocking(self._wake_w, False)
            os.write(self._wake_w, b"p")
        except OSError:         # full: the thread is already woken
            pass

    def status(self):
        with self.lock:
            return {"path": self.path, **self.counters, "last_error": self.last_error,
                    "model": dict(getattr(self.model, "counters", {}))}

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - a model bug must not kill the device
            self.counters["model_errors"] += 1
            self.last_error = repr(e)
            log.exception("%s: model error", self.name)
            return None

    def _write_out(self):
        flushed = False
        while self._pending:
            try:
                n = os.write(self.master_fd, self._pending)
            except (BlockingIOError, InterruptedError):
                if flushed:
                    break
                # The pty holds about 17 KiB that nobody has read: the firmware is not
                # listening (not started yet, restarting, stalled). A UART would have lost those
                # bytes (receiver overrun); do the same, so a firmware that opens the port later
                # does not read minutes-old sentences.
                termios.tcflush(self.slave_fd, termios.TCIFLUSH)
                self.counters["overruns"] += 1
                flushed = True
                continue
            self.counters["bytes_out"] += n
            del self._pending[:n]
        if len(self._pending) > MAX_PENDING_BYTES:
            drop = len(self._pending) - MAX_PENDING_BYTES
            del self._pending[:drop]
            self.counters["bytes_dropped"] += drop

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                nd = self._guard(self.model.next_due)
            if nd is None:
                timeout = IDLE_WAIT_S
            else:
                timeout = min(IDLE_WAIT_S, max(0.0, self.clock.wall_at(nd) - time.time()))
            wset = [self.master_fd] if self._pending else []
            try:
                r, w, _ = select.select([self.master_fd, self._wake_r], wset, [], timeout)
            except (OSError, ValueError):
                break   # fds closed under us: stopping
            if self._stop.is_set():
                break
            if self._wake_r in r:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            data = b""
            if self.master_fd in r:
                try:
                    data = os.read(self.master_fd, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError as e:
                    # EIO: no slave open (cannot happen while we hold slave_fd, but be safe).
                    self.last_error = repr(e)
                    time.sleep(0.01)
            with self.lock:
                now = self.clock.now()
                if data:
                    self.counters["bytes_in"] += len(data)
                    self._guard(self.model.receive, data, now)
                out = self._guard(self.model.due, now)
                if out:
                    self._pending += out
                try:
                    self._write_out()
                except OSError as e:
                    self.last_error = repr(e)
                    self.counters["bytes_dropped"] += len(self._pending)
                    self._pending.clear()


def open_raw(path):
    """Open a serial path the way the firmware does (raw, non-blocking); returns the fd.
    For tests and tools."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd
