"""The cellular modem as the box sees it: the SIMCom model (simulator/models/simcom.py) on a
pseudo-terminal (its UART), its pins on a socket, and the data link it provides after CONNECT.

    rig = ModemRig(SIMCom(variant="sim7600"), clock, run_dir, upstream=("127.0.0.1", broker))
    rig.start()
    rig.describe()     # -> sim.json "modem": {"uart", "pins", "proxy", "variant"}
    with rig.lock: rig.model.drop_carrier(rig.clock.now())
    rig.stop()

Pins: a Unix stream socket with one text line per request, answered at once:

    "W PWRKEY 1\\n" -> "K\\n"        drive an input of the modem (PWRKEY, POWERON, RESET, FLIGHT, DTR)
    "R STATUS\\n"   -> "1\\n"        read an output (STATUS, DCD, RI)
    anything else  -> "E <why>\\n"

Data link: PPP does not run over the pty (the Unix port has no network.PPP). Instead the box's
TCP connections go to the proxy's loopback port, and the proxy carries them to `upstream` (the
broker) only while the model says the link passes traffic (data mode, the PPP peer up, carrier).
A connection opened while it does not is reset at once (no route). When the call ends (NO CARRIER,
+++ then ATH, power off), the connections of that call are cut: cut="blackhole" (default, what a
lost radio link looks like) closes the upstream side and leaves the box's side open and silent,
so only the box's own supervision (NO CARRIER, STATUS) tells it the link is gone, not the socket;
cut="reset" closes both sides.

Counters (status()): accepted, refused, cut, bytes_up, bytes_down, pin_writes, pin_reads.
"""

import os
import select
import socket
import threading

from .pty import PtyServer


class ModemRig:
    def __init__(self, model, clock, run_dir, upstream=None, cut="blackhole"):
        if cut not in ("blackhole", "reset"):
            raise ValueError("cut must be blackhole or reset")
        self.model = model
        self.clock = clock
        self.upstream = upstream
        self.cut_mode = cut
        self.pty = PtyServer(model, clock, name="modem")
        self.lock = self.pty.lock
        self.pins_path = os.path.join(run_dir, "modem-pins.sock")
        if len(self.pins_path) > 100:
            import tempfile
            self.pins_path = os.path.join(tempfile.mkdtemp(prefix="envbox-modem-"), "pins.sock")
        self.counters = {"accepted": 0, "refused": 0, "cut": 0, "bytes_up": 0,
                         "bytes_down": 0, "pin_writes": 0, "pin_reads": 0}
        self._stop = threading.Event()
        self._threads = []
        self._pin_ls = None
        self._ls = None
        self.proxy_port = None

    # ---- lifecycle
    def start(self, t_power_on=None):
        self.pty.start(t_power_on)
        if os.path.exists(self.pins_path):
            os.unlink(self.pins_path)
        self._pin_ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._pin_ls.bind(self.pins_path)
        self._pin_ls.listen(4)
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(16)
        self.proxy_port = self._ls.getsockname()[1]
        for target in (self._accept_pins, self._accept_data):
            th = threading.Thread(target=target, daemon=True, name="modem-" + target.__name__)
            th.start()
            self._threads.append(th)
        return self

    def stop(self):
        self._stop.set()
        for s in (self._pin_ls, self._ls):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.pty.stop()
        try:
            os.unlink(self.pins_path)
        except OSError:
            pass

    def describe(self):
        return {"uart": self.pty.path, "pins": self.pins_path,
                "proxy": "127.0.0.1:%d" % self.proxy_port, "variant": self.model.variant,
                "cut": self.cut_mode}

    def status(self):
        with self.lock:
            return {**self.counters, "model": dict(self.model.counters),
                    "power": self.model.power, "mode": self.model.mode,
                    "call": self.model.call, "pty": self.pty.status()}

    # ---- pins
    def _accept_pins(self):
        while not self._stop.is_set():
            try:
                c, _ = self._pin_ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_pins, args=(c,), daemon=True).start()

    def _serve_pins(self, c):
        f = c.makefile("rwb", buffering=0)
        try:
            while not self._stop.is_set():
                line = f.readline()
                if not line:
                    return
                f.write(self._pin_request(line.decode(errors="replace").split()))
        except OSError:
            pass
        finally:
            c.close()

    def _pin_request(self, parts):
        t = self.clock.now()
        try:
            with self.lock:
                if len(parts) == 3 and parts[0] == "W":
                    self.model.set_pin(parts[1], int(parts[2]), t)
                    self.counters["pin_writes"] += 1
                    return b"K\n"
                if len(parts) == 2 and parts[0] == "R":
                    v = self.model.pin_out(parts[1], t)
                    self.counters["pin_reads"] += 1
                    return b"%d\n" % v
        except (KeyError, ValueError) as e:
            return b"E %s\n" % repr(e).encode()
        finally:
            self.pty.poke()
        return b"E bad request\n"

    # ---- data link
    def _accept_data(self):
        while not self._stop.is_set():
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            with self.lock:
                passing = self.model.passing()
                epoch = self.model.session
            if not passing or self.upstream is None:
                self.counters["refused"] += 1
                _reset(c)
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self.counters["refused"] += 1
                _reset(c)
                continue
            self.counters["accepted"] += 1
            threading.Thread(target=self._pump, args=(c, u, epoch), daemon=True).start()

    def _pump(self, c, u, epoch):
        socks = [c, u]
        cut = False
        try:
            while not self._stop.is_set():
                with self.lock:
                    live = self.model.passing() and self.model.session == epoch
                if not live and not cut:
                    cut = True
                    self.counters["cut"] += 1
                    _close(u)
                    socks = [c]
                    if self.cut_mode == "reset":
                        return
                r, _, _ = select.select(socks, [], [], 0.05)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if cut:
                        continue            # the radio link is gone: nothing gets through
                    if s is c:
                        u.sendall(data)
                        self.counters["bytes_up"] += len(data)
                    else:
                        c.sendall(data)
                        self.counters["bytes_down"] += len(data)
        except OSError:
            pass
        finally:
            _close(c)
            _close(u)


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def _reset(s):
    import struct
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()
