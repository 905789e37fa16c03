"""I2C bridge: I2C models served over a Unix stream socket, for a firmware process that has no
real I2C bus (the `sim` board's I2C object speaks this protocol).

Protocol (all integers big-endian). The client sends one request and waits for its response;
requests on one connection are served in order.

    request   op u8 | addr u8 (7-bit, 0x00..0x7F) | n u16 | data (n bytes, op 'W' only)
      op 0x57 'W'  write n bytes to addr (n = 0 is an address probe, as in I2C scan())
      op 0x52 'R'  read n bytes from addr
    response  status u8 | n u16 | data (n bytes; only for a successful read, n = requested n)
      status 0 OK, 1 NACK_ADDR (no device answers at addr), 2 NACK_DATA (the device refused the
      transfer, e.g. busy measuring), 3 BAD_REQUEST (unknown op, addr > 0x7F, n > MAX_N); after
      BAD_REQUEST the server closes the connection because the framing can no longer be trusted.

A client maps NACK_ADDR to OSError(ENODEV) and NACK_DATA to OSError(EIO), as machine.I2C does.
Models (models.I2CModel) get the virtual time of the transfer; one lock serialises the bus.
"""

import errno
import logging
import os
import socket
import struct
import threading

log = logging.getLogger(__name__)

OP_WRITE = 0x57
OP_READ = 0x52
OK, NACK_ADDR, NACK_DATA, BAD_REQUEST = 0, 1, 2, 3
MAX_N = 4096
_HDR = struct.Struct(">BBH")


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class I2CBridge:
    """Serve I2C models on the Unix socket `path`.

    counters: requests, nacks_addr, nacks_data, bad_requests, model_errors.
    """

    def __init__(self, path, clock):
        self.path = str(path)
        self.clock = clock
        self.models = {}
        self.bus_lock = threading.Lock()
        self.counters = {"requests": 0, "nacks_addr": 0, "nacks_data": 0, "bad_requests": 0,
                         "model_errors": 0}
        self.last_error = None
        self._sock = None
        self._stop = threading.Event()
        self._threads = []
        self._conns = set()

    def add(self, addr, model):
        if not 0 <= addr <= 0x7F:
            raise ValueError("7-bit address expected, got %r" % (addr,))
        with self.bus_lock:
            self.models[addr] = model

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(8)
        t = threading.Thread(target=self._accept, name="i2c-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        try:
            # Wake accept() and close every connection so their threads end.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(2.0)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="i2c-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        try:
            while not self._stop.is_set():
                hdr = _recv_exact(conn, _HDR.size)
                if hdr is None:
                    return
                op, addr, n = _HDR.unpack(hdr)
                data = b""
                if op == OP_WRITE and n <= MAX_N:
                    data = _recv_exact(conn, n)
                    if data is None:
                        return
                status, out = self.transfer(op, addr, n, data)
                conn.sendall(struct.pack(">BH", status, len(out)) + out)
                if status == BAD_REQUEST:
                    return
        except OSError:
            return
        finally:
            self._conns.discard(conn)
            conn.close()

    def transfer(self, op, addr, n, data=b""):
        """One bus transaction; returns (status, data read)."""
        self.counters["requests"] += 1
        if op not in (OP_WRITE, OP_READ) or addr > 0x7F or n > MAX_N:
            self.counters["bad_requests"] += 1
            return BAD_REQUEST, b""
        with self.bus_lock:
            model = self.models.get(addr)
            if model is None:
                self.counters["nacks_addr"] += 1
                return NACK_ADDR, b""
            t = self.clock.now()
            try:
                if op == OP_WRITE:
                    ok = model.write(bytes(data), t)
                    out = b""
                else:
                    out = model.read(n, t)
                    ok = out is not None
                    if ok and len(out) != n:
                        raise ValueError("model returned %d bytes for a %d-byte read" % (len(out), n))
            except Exception as e:  # noqa: BLE001 - a model bug is a NACK, not a dead bridge
                self.counters["model_errors"] += 1
                self.last_error = repr(e)
                log.exception("i2c 0x%02x: model error", addr)
                ok, out = False, b""
            if not ok:
                self.counters["nacks_data"] += 1
                return NACK_DATA, b""
            return OK, bytes(out) if op == OP_READ else b""


class I2CBridgeClient:
    """CPython client with machine.I2C's method names (writeto, readfrom_into, readfrom, scan);
    NACKs raise OSError(ENODEV) for the address, OSError(EIO) for data."""

    def __init__(self, path, timeout_s=5.0):
        self._s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._s.settimeout(timeout_s)
        self._s.connect(str(path))

    def close(self):
        self._s.close()

    def _call(self, op, addr, n, data=b""):
        self._s.sendall(_HDR.pack(op, addr, n) + bytes(data))
        hdr = _recv_exact(self._s, 3)
        if hdr is None:
            raise OSError(errno.ECONNRESET, "bridge closed the connection")
        status, m = hdr[0], struct.unpack(">H", hdr[1:3])[0]
        out = _recv_exact(self._s, m) if m else b""
        if status == NACK_ADDR:
            raise OSError(errno.ENODEV, "I2C NACK at address 0x%02x" % addr)
        if status == NACK_DATA:
            raise OSError(errno.EIO, "I2C data NACK at address 0x%02x" % addr)
        if status != OK:
            raise OSError(errno.EINVAL, "I2C bridge: bad request")
        return out

    def writeto(self, addr, buf):
        self._call(OP_WRITE, addr, len(buf), buf)
        return len(buf)

    def readfrom(self, addr, n):
        return self._call(OP_READ, addr, n)

    def readfrom_into(self, addr, buf):
        data = self._call(OP_READ, addr, len(buf))
        buf[:] = data

    def scan(self):
        found = []
        for a in range(0x08, 0x78):
            try:
                self._call(OP_WRITE, a, 0)
                found.append(a)
            except OSError as e:
                if e.errno != errno.ENODEV:
                    raise
        return found
