# The box's link to the world: a supervisor that owns the network (docs/firmware.md, "Link").
#
# The uplink (MQTT) waits on `link.up` and reports to the link what the broker did
# (broker_ok / broker_failed); the link decides when the network itself must be brought down and
# up again. This base class is the host's network (Unix port, Raspberry Pi): always up, nothing to
# supervise. The boards with a network of their own subclass it:
#
#   firmware/linkcell.py   CellLink: an LTE modem (SIMCom SIM7600 / A7670) and PPP
#   firmware/linkwifi.py   WifiLink: the Pico W's Wi-Fi station
#
# Nothing here may stall the sampler: every wait is an asyncio sleep, bounded; name lookups (DNS)
# and network time (SNTP) are non-blocking UDP exchanges with a bounded number of tries.
#
# Time: the link's waits are in the board's clock (`board.ticks_ms`: virtual ms on the sim board,
# where the modem model answers in virtual time). A time-out also waits at least `min_wall_ms` of
# real time, so the host's (unwarped) scheduling latency can never expire it on the sim board; on
# a device both clocks are the same and min_wall_ms is 0.

import asyncio
import os
import struct

from .compat import ticks_diff

# seconds from the NTP era (1900) to 2020-01-01
_NTP_TO_2020_S = 3786825600

# link states, as the status message shows them
STATE_UP = "up"
STATE_DOWN = "down"


class Deadline:
    """A time-out in the board's clock that also lasts at least min_wall_ms of real time (so the
    host's scheduling latency cannot expire a wait for an answer on the sim board)."""

    def __init__(self, clock, ms, floor=True):
        self.clock = clock
        self.ms = ms
        self.v0 = clock.ticks_ms()
        self.w0 = clock.wall_ms()
        w = clock.min_wall_ms if floor else 0
        self.wall_min = w if w < ms else ms

    def expired(self):
        c = self.clock
        if ticks_diff(c.ticks_ms(), self.v0) < self.ms:
            return False
        return ticks_diff(c.wall_ms(), self.w0) >= self.wall_min

    def elapsed_ms(self):
        return ticks_diff(self.clock.ticks_ms(), self.v0)


class LinkClock:
    """The board's clocks as the link uses them: ticks_ms (board clock), wall_ms (real), the
    board's warp (board-clock ms per real ms; 1 on a device) and the floor for time-outs."""

    def __init__(self, ticks_ms, wall_ms, warp=1.0, min_wall_ms=0, poll_ms=20):
        self.ticks_ms = ticks_ms
        self.wall_ms = wall_ms
        self.warp_milli = int(warp * 1000 + 0.5) or 1000
        self.min_wall_ms = min_wall_ms
        self.poll_ms = poll_ms

    def deadline(self, ms):
        return Deadline(self, ms)

    async def sleep(self, ms):
        """Sleep `ms` of the board's clock (no wall-time floor: a pause, not a time-out)."""
        d = Deadline(self, ms, False)
        w = ms * 1000 // self.warp_milli
        await asyncio.sleep_ms(w if w > 0 else 0)
        while not d.expired():
            await asyncio.sleep_ms(self.poll_ms)


def is_ipv4(host):
    """True for a dotted-quad literal (no lookup needed)."""
    if isinstance(host, bytes):
        host = host.decode()
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3:
            return False
        for ch in p:
            if ch < "0" or ch > "9":
                return False
        if int(p) > 255:
            return False
    return True


def dns_query(name, qid):
    """A DNS query (RFC 1035 4.1) for the A record of `name`: bytes."""
    if isinstance(name, str):
        name = name.encode()
    q = bytearray(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0))   # RD, one question
    for label in name.split(b"."):
        if not label or len(label) > 63:
            raise ValueError("bad host name")
        q.append(len(label))
        q.extend(label)
    q.append(0)
    q.extend(b"\x00\x01\x00\x01")     # QTYPE A, QCLASS IN
    return bytes(q)


def _skip_name(msg, i):
    while True:
        n = msg[i]
        if n & 0xC0 == 0xC0:
            return i + 2            # compression pointer ends the name
        if n == 0:
            return i + 1
        i += n + 1


def dns_answer(msg, qid):
    """The first A record of a DNS response to query `qid` as a dotted string; None if the answer
    has none; raises ValueError for a malformed or foreign message or an error rcode."""
    if len(msg) < 12:
        raise ValueError("short DNS message")
    rid, flags, qd, an = struct.unpack_from(">HHHH", msg, 0)
    if rid != qid or not flags & 0x8000:
        raise ValueError("not our answer")
    if flags & 0x000F:
        raise ValueError("DNS rcode %d" % (flags & 0x000F))
    i = 12
    try:
        for _ in range(qd):
            i = _skip_name(msg, i) + 4
        for _ in range(an):
            i = _skip_name(msg, i)
            typ, cls, _ttl, rdlen = struct.unpack_from(">HHIH", msg, i)
            i += 10
            if typ == 1 and cls == 1 and rdlen == 4:
                return "%d.%d.%d.%d" % (msg[i], msg[i + 1], msg[i + 2], msg[i + 3])
            i += rdlen
    except (IndexError, ValueError):
        raise ValueError("malformed DNS message")
    return None


def sntp_request():
    """An SNTP client request (RFC 4330 section 5): LI 0, version 4, mode 3."""
    b = bytearray(48)
    b[0] = 0x23
    return b


def sntp_time(msg):
    """(seconds since 2020, ms into that second) from an SNTP server reply; ValueError when the
    reply is not a usable server answer (wrong mode, kiss-o'-death stratum 0, unsynchronised)."""
    if len(msg) < 48:
        raise ValueError("short SNTP reply")
    mode = msg[0] & 7
    li = msg[0] >> 6
    if mode != 4 or msg[1] == 0 or li == 3:
        raise ValueError("SNTP reply unusable (mode %d stratum %d li %d)" % (mode, msg[1], li))
    secs, frac = struct.unpack_from(">II", msg, 40)   # transmit timestamp
    if secs == 0:
        raise ValueError("SNTP reply without a time")
    t = secs - _NTP_TO_2020_S
    if t < 0:
        # NTP era 1 starts in 2036: seconds wrap
        t += 1 << 32
    return t, (frac >> 16) * 1000 >> 16


def _socket():
    # imported where it is used: a port without sockets (the 32-bit test build) still loads the
    # link's other parts (its DNS and SNTP codecs, the cellular and Wi-Fi supervisors' logic)
    import socket
    return socket


def _addr(host, port):
    return _socket().getaddrinfo(host, port)[0][-1]


class Link:
    """The host's network: always up (Unix port, Raspberry Pi). Subclasses supervise a real one.

    up             asyncio.Event, set while the network is usable for the uplink
    run()          the supervisor task (this one returns at once: nothing to supervise)
    broker_failed  the uplink could not connect to the broker or lost it
    broker_ok      the uplink got a CONNACK
    time_s2020()   (t_s2020, ticks_ms at which that second began) from the network's clock, or None
    status_into(d) adds "link": {...} to the status dict
    resolve(host)  async: an IPv4 string for host (DNS over non-blocking UDP), or raises OSError
    """

    NAME = "host"
    ALWAYS_UP = True                  # the host's network: no supervision
    broker_failures_to_recycle = 5    # consecutive broker failures before the link is re-cycled
    dns_timeout_ms = 3000             # per DNS try (board clock)
    dns_tries = 2
    ntp_timeout_ms = 2000             # per SNTP try
    ntp_period_ms = 3600000           # ask the time server again after this (board clock)

    def __init__(self, board, min_wall_ms=0):
        self.board = board
        self.clock = LinkClock(board.ticks_ms, board.wall_ms, getattr(board, "warp", 1.0),
                               min_wall_ms, getattr(board, "poll_ms", 20))
        self.up = asyncio.Event()
        self.state = STATE_DOWN
        self.ups = 0                  # times the network came up
        self.drops = 0                # times it went down after being up
        self.last_error = None        # why it last went down or failed to come up (a short text)
        self.broker_failures = 0      # consecutive
        self.recycles = 0             # re-cycles asked for by broker failures
        self.dns_lookups = 0
        self.dns_errors = 0
        self.ntp_host = getattr(board, "ntp_host", None)
        self.ntp_port = getattr(board, "ntp_port", 123)
        self.ntp_ok = 0
        self.ntp_errors = 0
        self._time = None             # (t_s2020, tick) from the network's clock
        self._time_tick = 0           # when _time was learned
        self._qid = os.urandom(1)[0] << 8 | os.urandom(1)[0]
        if self.ALWAYS_UP:
            self._set_up()

    # ---- state
    def _log(self, msg):
        self.board.log("link: " + msg)

    def _set_up(self):
        if self.state != STATE_UP:
            self.state = STATE_UP
            self.ups += 1
            self.broker_failures = 0
            self.up.set()

    def _set_down(self, state, why):
        """Leave the up state (or report a failed bring-up) with a reason."""
        if self.state == STATE_UP:
            self.drops += 1
        if self.up.is_set():
            self.up.clear()
        self.state = state
        if why is not None:
            self.last_error = why
            self._log("%s: %s" % (state, why))

    def broker_failed(self):
        self.broker_failures += 1

    def broker_ok(self):
        self.broker_failures = 0

    def _recycle_due(self):
        if self.broker_failures >= self.broker_failures_to_recycle:
            self.recycles += 1
            self.broker_failures = 0
            return True
        return False

    # ---- the supervisor
    async def run(self):
        """The host's network needs no supervision; only network time is kept, if configured."""
        if not self.ntp_host:
            return
        while True:
            if self.up.is_set() and self._time_due():
                await self._ntp()
            await self.clock.sleep(60000 if self._time is None else self.ntp_period_ms)

    def _time_due(self):
        return (self._time is None
                or ticks_diff(self.clock.ticks_ms(), self._time_tick) >= self.ntp_period_ms)

    # ---- time
    def time_s2020(self):
        """(t_s2020, ticks_ms at which second t_s2020 began) from the network's clock, or None."""
        return self._time

    def _got_time(self, t_s2020, tick):
        self._time = (t_s2020, tick)
        self._time_tick = self.clock.ticks_ms()

    async def _ntp(self):
        """One SNTP exchange (RFC 4330) over a non-blocking UDP socket; True when time was set."""
        host = self.ntp_host
        try:
            ip = await self.resolve(host)
            addr = _addr(ip, self.ntp_port)
        except (OSError, ValueError) as e:
            self.ntp_errors += 1
            self.last_error = "ntp: %s" % (e,)
            return False
        so = _socket()
        s = so.socket(so.AF_INET, so.SOCK_DGRAM)
        try:
            s.setblocking(False)
            for _ in range(2):
                t_send = self.clock.ticks_ms()
                s.sendto(sntp_request(), addr)
                msg = await self._recv(s, self.ntp_timeout_ms)
                if msg is None:
                    continue
                t_recv = self.clock.ticks_ms()
                try:
                    t, ms = sntp_time(msg)
                except ValueError as e:
                    self.ntp_errors += 1
                    self.last_error = "ntp: %s" % (e,)
                    return False
                # the server's transmit time + half the round trip is "now" at t_recv
                tick = t_recv - ticks_diff(t_recv, t_send) // 2 - ms
                self._got_time(t, tick & 0x3FFFFFFF)
                self.ntp_ok += 1
                return True
            self.ntp_errors += 1
            self.last_error = "ntp: no answer from %s" % host
            return False
        finally:
            s.close()

    async def _recv(self, s, timeout_ms):
        d = self.clock.deadline(timeout_ms)
        while not d.expired():
            try:
                msg = s.recv(512)
                if msg:
                    return msg
            except OSError:
                pass            # EAGAIN: nothing yet (also ECONNREFUSED from an ICMP error)
            await asyncio.sleep_ms(self.clock.poll_ms)
        return None

    # ---- DNS
    def dns_server(self):
        """The resolver to ask (the network's, e.g. from PPP or DHCP), or None."""
        return getattr(self.board, "dns_server", None)

    async def resolve(self, host):
        """host as an IPv4 string: literals at once, names by a DNS query over a non-blocking
        UDP socket (bounded: dns_tries x dns_timeout_ms). Raises OSError when it cannot."""
        if isinstance(host, bytes):
            host = host.decode()
        if is_ipv4(host):
            return host
        if host == "localhost":
            return "127.0.0.1"
        server = self.dns_server()
        if not server:
            raise OSError("no DNS server for %s" % host)
        self.dns_lookups += 1
        self._qid = (self._qid + 1) & 0xFFFF
        qid = self._qid
        q = dns_query(host, qid)
        port = 53
        if ":" in server:
            server, p = server.rsplit(":", 1)
            port = int(p)
        so = _socket()
        s = so.socket(so.AF_INET, so.SOCK_DGRAM)
        try:
            s.setblocking(False)
            addr = _addr(server, port)
            for _ in range(self.dns_tries):
                s.sendto(q, addr)
                msg = await self._recv(s, self.dns_timeout_ms)
                if msg is None:
                    continue
                try:
                    ip = dns_answer(msg, qid)
                except ValueError as e:
                    self.dns_errors += 1
                    raise OSError("dns %s: %s" % (host, e))
                if ip is None:
                    self.dns_errors += 1
                    raise OSError("dns %s: no A record" % host)
                return ip
        finally:
            s.close()
        self.dns_errors += 1
        raise OSError("dns %s: no answer from %s" % (host, server))

    # ---- status
    def rssi(self):
        """Signal strength of the network in dBm (modem CSQ, Wi-Fi RSSI), or None."""
        return None

    def status_into(self, d):
        """Add the link's fields to the status message dict."""
        d["link"] = self._status()

    def _status(self):
        s = {"kind": self.NAME, "state": self.state, "ups": self.ups, "drops": self.drops,
             "last_error": self.last_error}
        if self.recycles:
            s["recycles"] = self.recycles
        if self.dns_lookups:
            s["dns_lookups"] = self.dns_lookups
            s["dns_errors"] = self.dns_errors
        if self.ntp_host:
            s["ntp_ok"] = self.ntp_ok
            s["ntp_errors"] = self.ntp_errors
        return s
