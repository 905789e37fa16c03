# The simulated LTE modem from the box's side (MicroPython Unix port): what the `sim` board needs
# to run the esp32_lte board's modem code (firmware/linkcell.py, firmware/drivers/simcom.py)
# against the simulator's SIMCom model (simulator/models/simcom.py, simulator/modem.py).
#
#   UART   the model's pseudo-terminal, opened like the sensors' (boards/sim.py PtyUART)
#   pins   SimPin objects with machine.Pin's value() over the rig's pin socket
#   PPP    a stand-in for network.PPP (the Unix port has none) that speaks to the model's
#          simulated PPP peer on the UART: connect() sends an LCP Configure-Request and is
#          connected when the Configure-Ack comes back; a Terminate-Request or NO CARRIER from
#          the modem ends it, as lwIP's PPP ends on the real board. The box's TCP traffic goes
#          to the rig's proxy (sim.json modem.proxy), which passes it only while that session
#          is up.
#
# make_link(board, desc) builds the CellLink the sim board exposes as board.link, from sim.json's
# "modem" section (desc: {"uart", "pins", "proxy", "variant"}).

import socket
import struct

# Set to a list to record the calls the link makes on the stand-ins (qualname, positional count,
# keyword names): tests/test_link_modem.py checks each against the esp32 port's stubs.
CALLS = None


def _rec(name, args, kwargs):
    if CALLS is not None:
        c = (name, len(args), tuple(sorted(kwargs)))
        if c not in CALLS:
            CALLS.append(c)

# LCP frames the model recognises (simulator/models/simcom.py)
_CONF_REQ = b"\x7e\xff\x03\xc0\x21\x01\x01\x00\x04\x7e"
_CONF_ACK = b"\x7e\xff\x03\xc0\x21\x02\x01\x00\x04\x7e"
_TERM_REQ = b"\x7e\xff\x03\xc0\x21\x05\x02\x00\x04\x7e"

# network.PPP status() values of the esp32 port (ports/esp32/network_ppp.c); an error is the
# negative lwIP code, PPPERR_CONNECT = 6 (connection lost)
_INACTIVE = 0
_ACTIVE = 1
_ERROR = 2
_CONNECTING = 3
_CONNECTED = 4
_PPPERR_CONNECT = 6


class PinBus:
    """The rig's pin socket (simulator/modem.py): one request line, one answer line."""

    def __init__(self, path):
        self._s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._s.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
        self._b = bytearray(1)

    def _ask(self, req):
        self._s.write(req)
        out = b""
        while True:
            k = self._s.readinto(self._b)
            if not k:
                raise OSError(5)
            if self._b[0] == 0x0A:
                break
            out += bytes(self._b)
        if out[:1] == b"E":
            raise OSError("pin bus: " + out.decode())
        return out

    def write(self, name, v):
        self._ask(b"W %s %d\n" % (name, 1 if v else 0))

    def read(self, name):
        return 1 if self._ask(b"R %s\n" % name) == b"1" else 0


class SimPin:
    """machine.Pin's value() for one modem pin on the pin bus."""

    def __init__(self, bus, name, out):
        self.bus = bus
        self.name = name
        self.out = out          # True: the box drives it
        self._v = 0

    def value(self, *args):
        _rec("Pin.value", args, {})
        v = args[0] if args else None
        if v is None:
            return self._v if self.out else self.bus.read(self.name)
        self._v = 1 if v else 0
        self.bus.write(self.name, self._v)
        return None


def pins_for(variant, path):
    """The pins the LTE board wires for `variant` (boards/esp32_lte.py MODEM_PINS)."""
    bus = PinBus(path)
    if variant == "a7670":
        return {"pwrkey": SimPin(bus, b"PWRKEY", True), "poweron": SimPin(bus, b"POWERON", True),
                "reset": SimPin(bus, b"RESET", True), "dtr": SimPin(bus, b"DTR", True)}
    return {"pwrkey": SimPin(bus, b"PWRKEY", True), "flight": SimPin(bus, b"FLIGHT", True),
            "status": SimPin(bus, b"STATUS", False), "dtr": SimPin(bus, b"DTR", True)}


class PPP:
    """network.PPP's interface (esp32 port, MicroPython 1.24+) over the simulated PPP peer."""

    SEC_NONE = 0
    SEC_PAP = 1
    SEC_CHAP = 2
    AUTH_NONE = 0
    AUTH_PAP = 1
    AUTH_CHAP = 2

    def __init__(self, stream):
        _rec("PPP", (stream,), {})
        self._stream = stream
        self._state = _INACTIVE
        self._err = 0
        self._buf = bytearray(64)
        self._tail = b""
        self.dns = "0.0.0.0"

    def active(self, *args):
        _rec("PPP.active", args, {})
        if args:
            if args[0]:
                if self._state < _ACTIVE:
                    self._state = _ACTIVE
            else:
                self._state = _INACTIVE
                self._stream = None
        return self._state >= _ACTIVE

    def connect(self, **kwargs):
        _rec("PPP.connect", (), kwargs)
        security = kwargs.get("security", 0)
        user = kwargs.get("user")
        key = kwargs.get("key")
        if self._state in (_CONNECTING, _CONNECTED):
            raise OSError(114)      # EALREADY, as the port raises
        if security not in (0, 1, 2):
            raise ValueError("invalid auth")
        if security and (user is None or key is None):
            raise TypeError("user and key are needed with security")
        self._state = _CONNECTING
        self._tail = b""
        if self._stream is not None:
            self._stream.write(_CONF_REQ)
        self.poll()

    def poll(self, irq_arg=None):
        s = self._stream
        if s is None or self._state < _ACTIVE:
            return -1
        total = 0
        while True:
            k = s.readinto(self._buf)
            if not k:
                break
            total += k
            data = self._tail + bytes(self._buf[:k])
            if self._state == _CONNECTING and _CONF_ACK in data:
                self._state = _CONNECTED
            if _TERM_REQ in data or b"NO CARRIER" in data:
                if self._state >= _CONNECTING:
                    self._state = _ERROR
                    self._err = _PPPERR_CONNECT
            self._tail = data[-16:]
        return total

    def isconnected(self):
        _rec("PPP.isconnected", (), {})
        self.poll()
        return self._state == _CONNECTED

    def status(self):
        _rec("PPP.status", (), {})
        self.poll()
        return -self._err if self._state == _ERROR else self._state

    def disconnect(self):
        _rec("PPP.disconnect", (), {})
        if self._state in (_CONNECTING, _CONNECTED):
            if self._stream is not None:
                self._stream.write(_TERM_REQ)
            self._state = _ACTIVE

    def config(self, *args, **kwargs):
        _rec("PPP.config", args, kwargs)
        if "stream" in kwargs:
            self._stream = kwargs["stream"]
            return None
        if args and args[0] == "stream":
            return self._stream
        raise ValueError("unknown config param")

    def ifconfig(self, *args):
        _rec("PPP.ifconfig", args, {})
        configtuple = args[0] if args else None
        if configtuple is not None:
            self.dns = configtuple[3]
            return None
        if self._state < _ACTIVE:
            return (None, None, None, None)
        return ("10.64.64.64", "10.64.64.65", "255.255.255.255", self.dns)


def make_link(board, desc, cfg=None, min_wall_ms=300):
    """The sim board's CellLink over the simulator's modem rig (sim.json "modem" = desc)."""
    from envbox.boards.sim import PtyUART
    from envbox.firmware.linkcell import CellLink
    variant = desc.get("variant", "sim7600")
    uart = PtyUART(desc["uart"])
    return CellLink(board, uart, pins_for(variant, desc["pins"]), PPP,
                    cfg or {"apn": desc.get("apn", "sim.envbox")}, variant=variant,
                    reset_active=1, min_wall_ms=min_wall_ms)
