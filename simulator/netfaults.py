"""Network faults between the box and the broker, for firmware tests: a TCP proxy in front of a
real broker whose behaviour can be switched while it runs.

    p = FaultProxy(upstream_port).start()     # firmware connects to p.port
    p.mode = "silent"       # accept TCP, read and discard, never answer (no CONNACK, no PUBACK)
    p.mode = "drop_after_publish"   # forward; after each QoS>0 PUBLISH from the client and the
                                    # broker's PUBACK for it, close the connection
    p.mode = "pass"         # a plain proxy
    p.drop_all()            # close every open connection now
    p.stop()

Modes apply to connections accepted after the change (and "silent" also to new data on old ones
is not needed: drop_all() first). Counters: accepted, publishes, drops.
"""

import socket
import threading


def _read_packet(sock, buf):
    """Read one MQTT packet from sock (blocking); return its bytes or None at EOF."""
    def need(n):
        while len(buf) < n:
            d = sock.recv(65536)
            if not d:
                return False
            buf.extend(d)
        return True
    if not need(2):
        return None
    n, shift, i = 0, 0, 1
    while True:
        if not need(i + 1):
            return None
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    if not need(i + n):
        return None
    pkt = bytes(buf[:i + n])
    del buf[:i + n]
    return pkt


class FaultProxy:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.mode = "pass"
        self.accepted = self.publishes = self.drops = 0
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind((host, 0))
        self._ls.listen(16)
        self.port = self._ls.getsockname()[1]
        self._conns = []
        self._lock = threading.Lock()
        self._stop = False

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._stop = True
        try:
            self._ls.close()
        except OSError:
            pass
        self.drop_all()

    def drop_all(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                self._conns.append(c)
            mode = self.mode
            if mode == "silent":
                threading.Thread(target=self._swallow, args=(c,), daemon=True).start()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns.append(u)
            state = {"close_after_puback": False, "mode": mode}
            threading.Thread(target=self._pump_up, args=(c, u, state), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(u, c, state), daemon=True).start()

    def _swallow(self, c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    def _close(self, *socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump_up(self, c, u, state):
        buf = bytearray()
        try:
            while True:
                pkt = _read_packet(c, buf)
                if pkt is None:
                    break
                if pkt[0] & 0xF0 == 0x30 and pkt[0] & 0x06:
                    self.publishes += 1
                    if state["mode"] == "drop_after_publish":
                        state["close_after_puback"] = True
                u.sendall(pkt)
        except OSError:
            pass
        self._close(c, u)

    def _pump_down(self, u, c, state):
        buf = bytearray()
        try:
            while True:
                pkt = _read_packet(u, buf)
                if pkt is None:
                    break
                c.sendall(pkt)
                if pkt[0] & 0xF0 == 0x40 and state["close_after_puback"]:
                    self.drops += 1
                    break
        except OSError:
            pass
        self._close(c, u)
