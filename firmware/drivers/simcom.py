# SIMCom LTE modems (SIM7600 series, A7670/A76xx series) on a UART: AT commands in command mode,
# power sequencing through the board's pins, and the parsers for their answers.
# References: SIMCom SIM7500/SIM7600 Series AT Command Manual (V3.00) and Hardware Design
# (PWRKEY, STATUS); A76XX Series AT Command Manual; LilyGO's T-SIM7600X / T-A7670X pin maps and
# power-on sequences (docs/boards.md). The simulator's model of the same part is
# simulator/models/simcom.py; both read tests/vectors/simcom.json.
#
# Everything here is async and bounded: a command waits for its final result code at most
# timeout_ms of the board's clock (clock.deadline), reading the UART without blocking. The link
# supervisor (firmware/linkcell.py) decides what to do with the answers.
#
# Pins (dict given by the board; the levels are the microcontroller pin's):
#   pwrkey   1 = key pressed (LilyGO boards drive PWRKEY through an inverting transistor)
#   status   input, 1 = modem powered on (T-SIM7600X: GPIO34; the T-A7670X has none)
#   poweron  1 = the board's modem supply switch on (T-A7670X: GPIO12)
#   reset    `reset_active` = reset asserted (T-A7670X: GPIO5, active high)
#   flight   1 = RF on (T-SIM7600X: GPIO25)
#   dtr      0 = modem awake (sleep mode only follows DTR after AT+CSCLK=1)
#   dcd      input, `dcd_active` = carrier (not wired on the LilyGO boards)

from ..compat import const

# final result codes of a command
RC_OK = const(0)
RC_ERROR = const(1)
RC_CME = const(2)          # +CME ERROR: n (n in self.cme)
RC_CONNECT = const(3)
RC_NO_CARRIER = const(4)
RC_TIMEOUT = const(5)
RC_NAMES = ("OK", "ERROR", "CME ERROR", "CONNECT", "NO CARRIER", "timeout")

CME_SIM_NOT_INSERTED = const(10)
CME_SIM_PIN = const(11)
CME_SIM_BUSY = const(14)
CME_SIM_WRONG = const(15)
CME_PASSWORD = const(16)

# registration <stat> of +CREG/+CGREG/+CEREG (3GPP TS 27.007 7.2)
REG_NAMES = ("not_registered", "home", "searching", "denied", "unknown", "roaming")

# part timings (hardware design manuals; LilyGO's examples)
VARIANTS = {
    # name: (power-on pulse ms, power-off pulse ms, boot ms (typical, to first answer), model)
    "sim7600": (500, 3000, 15000),
    "a7670": (100, 3000, 3000),
}
RESET_PULSE_MS = const(2600)   # A7670: RESET held 2.6 s (LilyGO's sequence)
GUARD_MS = const(1200)         # +++ guard time: >= 1 s of silence before and after (S12 = 50)
POWER_OFF_WAIT_MS = const(12000)


def _int(b, default=None):
    """Leading decimal integer of bytes b (after spaces), else default."""
    n = 0
    seen = False
    neg = False
    i = 0
    while i < len(b) and b[i] == 0x20:
        i += 1
    if i < len(b) and b[i] == 0x2D:
        neg = True
        i += 1
    while i < len(b) and 0x30 <= b[i] <= 0x39:
        n = n * 10 + b[i] - 0x30
        seen = True
        i += 1
    if not seen:
        return default
    return -n if neg else n


def parse_csq(v):
    """'+CSQ: <rssi>,<ber>' value -> (rssi code 0..31 or 99, dBm or None). 0 is -113 dBm or
    less, 31 is -51 dBm or more, 2 dB a step; 99 is not known."""
    r = _int(v)
    if r is None or r < 0:
        return None, None
    if r == 99 or r > 31:
        return r, None
    return r, -113 + 2 * r


def parse_reg(v):
    """'+CEREG: <n>,<stat>[,...]' (query answer) -> stat (0..5), or None."""
    i = v.find(b",")
    if i < 0:
        return _int(v)
    return _int(v[i + 1:])


def parse_cpin(v):
    """'+CPIN: <code>' -> "ready", "pin", "puk" or the code in lower case."""
    v = bytes(v).strip()
    if v == b"READY":
        return "ready"
    if v == b"SIM PIN":
        return "pin"
    if v == b"SIM PUK":
        return "puk"
    return v.decode().lower()


def parse_iccid(v):
    """'+ICCID: <digits>' -> the ICCID string (19-20 digits; a trailing F is padding)."""
    v = bytes(v).strip()
    if v.endswith(b"F") or v.endswith(b"f"):
        v = v[:-1]
    for c in v:
        if not 0x30 <= c <= 0x39:
            return None
    return v.decode() if 18 <= len(v) <= 22 else None


def _days(y, m, d):
    # days from 1970-01-01 (proleptic Gregorian; H. Hinnant's days_from_civil)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_2020 = const(18262)      # _days(2020, 1, 1)


def parse_cclk(v):
    """'+CCLK: "yy/MM/dd,hh:mm:ss±zz"' (local time, zz in quarter hours) -> UTC seconds since
    2020, or None when the modem has no network time yet (it then counts from its default date,
    1970 or 1980: any year before 2020 or from 2070 on is refused) or the text is malformed."""
    v = bytes(v).strip().strip(b'"')
    if len(v) < 17 or v[2] != 0x2F or v[5] != 0x2F or v[8] != 0x2C:
        return None
    yy = _int(v[0:2], -1)
    mo = _int(v[3:5], -1)
    dd = _int(v[6:8], -1)
    hh = _int(v[9:11], -1)
    mi = _int(v[12:14], -1)
    ss = _int(v[15:17], -1)
    if yy < 20 or yy >= 70 or hh < 0 or mi < 0 or ss < 0:
        return None
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 61):
        return None
    tz_q = 0
    if len(v) > 17:
        tz_q = _int(v[18:], 0)
        if v[17] == 0x2D:
            tz_q = -tz_q
    days = _days(2000 + yy, mo, dd) - _DAYS_2020
    return days * 86400 + hh * 3600 + mi * 60 + ss - tz_q * 900


class SIMCom:
    """One SIMCom modem on `uart` (machine.UART API: any/readinto/write) with the board's
    `pins` (dict, keys above) and `clock` (firmware.link.LinkClock: the board's clock).

    Counters: commands, timeouts, errors, overflows (answer longer than the buffer),
    power_on_pulses, power_off_pulses, resets, escapes_ok, escapes_failed."""

    def __init__(self, uart, pins, clock, variant="sim7600", reset_active=1, dcd_active=0):
        if variant not in VARIANTS:
            raise ValueError("unknown SIMCom variant %r" % variant)
        self.uart = uart
        self.pins = pins
        self.clock = clock
        self.variant = variant
        self.on_pulse_ms, self.off_pulse_ms, self.boot_ms = VARIANTS[variant]
        self.reset_active = reset_active
        self.dcd_active = dcd_active
        self.resp = bytearray(512)     # the lines of the last answer
        self.n = 0
        self._rx = bytearray(64)
        self.cme = None                # the last +CME ERROR code
        self.last_cmd = None
        # counters
        self.commands = self.timeouts = self.errors = self.overflows = 0
        self.power_on_pulses = self.power_off_pulses = self.resets = 0
        self.escapes_ok = self.escapes_failed = 0

    # ---- pins
    def _pin(self, name, v):
        p = self.pins.get(name)
        if p is not None:
            p.value(v)

    def init_pins(self):
        """Supply on, RF on, DTR low (awake), RESET and PWRKEY released."""
        self._pin("pwrkey", 0)
        self._pin("reset", 1 - self.reset_active)
        self._pin("poweron", 1)
        self._pin("flight", 1)
        self._pin("dtr", 0)

    def is_on(self):
        """True/False from the STATUS pin; None on boards without one."""
        p = self.pins.get("status")
        return None if p is None else bool(p.value())

    def carrier(self):
        """True/False from DCD; None where DCD is not wired."""
        p = self.pins.get("dcd")
        return None if p is None else p.value() == self.dcd_active

    async def pulse_pwrkey(self, ms):
        self._pin("pwrkey", 1)
        await self.clock.sleep(ms)
        self._pin("pwrkey", 0)

    async def power_on(self):
        """The power-on pulse (the modem boots; it answers after boot_ms or so)."""
        self.power_on_pulses += 1
        await self.pulse_pwrkey(self.on_pulse_ms)

    async def power_off(self):
        """Power the modem down: AT+CPOF if it answers, else the long PWRKEY press; then wait for
        STATUS to fall (boards without STATUS: a fixed wait). True when it is known off."""
        if await self.cmd(b"AT+CPOF", 3000) != RC_OK:
            self.power_off_pulses += 1
            await self.pulse_pwrkey(self.off_pulse_ms)
        if self.pins.get("status") is None:
            await self.clock.sleep(3000)
            return True
        d = self.clock.deadline(POWER_OFF_WAIT_MS)
        while not d.expired():
            if not self.is_on():
                return True
            await self.clock.sleep(200)
        return False

    async def hard_reset(self):
        """Pulse RESET (boards that wire it); the modem restarts. False without a RESET pin."""
        if self.pins.get("reset") is None:
            return False
        self.resets += 1
        self._pin("reset", self.reset_active)
        await self.clock.sleep(RESET_PULSE_MS)
        self._pin("reset", 1 - self.reset_active)
        return True

    # ---- AT exchange
    def drain(self):
        """Discard what waits in the receive buffer (URCs, a late answer, PPP bytes)."""
        u = self.uart
        for _ in range(64):
            k = u.readinto(self._rx)
            if not k:
                return

    def _append(self, k):
        r = self.resp
        n = self.n
        if n + k > len(r):
            # an answer longer than the buffer: keep the newest bytes (the final code is last)
            self.overflows += 1
            n = 0
        r[n:n + k] = memoryview(self._rx)[:k]
        self.n = n + k

    def _final(self, start):
        """Scan complete lines from `start`; return (rc or -1, next line start)."""
        r = self.resp
        i = start
        ls = start
        while i < self.n:
            c = r[i]
            if c == 0x0D or c == 0x0A:
                if i > ls:
                    rc = self._code(memoryview(r)[ls:i])
                    if rc >= 0:
                        return rc, i + 1
                ls = i + 1
            i += 1
        return -1, ls

    def _code(self, line):
        if line == b"OK":
            return RC_OK
        if line == b"ERROR":
            return RC_ERROR
        if line[:12] == b"+CME ERROR: ":
            self.cme = _int(line[12:], -1)
            return RC_CME
        if line[:7] == b"CONNECT":
            return RC_CONNECT
        if line == b"NO CARRIER" or line == b"NO DIALTONE" or line == b"BUSY" or \
                line == b"NO ANSWER":
            return RC_NO_CARRIER
        return -1

    async def cmd(self, c, timeout_ms=1000):
        """Send AT command c (bytes, without the CR); wait for its final result code, at most
        timeout_ms. The answer's lines stay in self.resp[:self.n] (see info())."""
        self.drain()
        self.commands += 1
        self.last_cmd = c
        self.n = 0
        self.cme = None
        u = self.uart
        u.write(c)
        u.write(b"\r")
        d = self.clock.deadline(timeout_ms)
        ls = 0
        while True:
            k = u.readinto(self._rx)
            if k:
                self._append(k)
                rc, ls = self._final(ls)
                if rc >= 0:
                    if rc == RC_ERROR or rc == RC_CME:
                        self.errors += 1
                    return rc
                continue
            if d.expired():
                self.timeouts += 1
                return RC_TIMEOUT
            await self.clock.sleep(self.clock.poll_ms)

    def info(self, prefix):
        """The value after `prefix` (e.g. b"+CSQ: ") on the first answer line that has it, as
        bytes; None if no line has it."""
        r = bytes(self.resp[:self.n])
        i = r.find(prefix)
        while i > 0 and r[i - 1] not in (0x0A, 0x0D):
            i = r.find(prefix, i + 1)
        if i < 0:
            return None
        j = i + len(prefix)
        e = j
        while e < len(r) and r[e] not in (0x0A, 0x0D):
            e += 1
        return r[j:e]

    async def at_ok(self, tries=1, timeout_ms=1000):
        for _ in range(tries):
            if await self.cmd(b"AT", timeout_ms) == RC_OK:
                return True
        return False

    async def escape(self):
        """Leave data mode: silence, '+++', silence (the guard times), then OK. The call stays
        up (ATO would resume it); hang up with ATH afterwards."""
        self.drain()
        await self.clock.sleep(GUARD_MS)
        self.drain()
        self.n = 0
        self.uart.write(b"+++")
        await self.clock.sleep(GUARD_MS)
        d = self.clock.deadline(1500)
        ls = 0
        while True:
            k = self.uart.readinto(self._rx)
            if k:
                self._append(k)
                rc, ls = self._final(ls)
                if rc == RC_OK:
                    self.escapes_ok += 1
                    return True
                continue
            if d.expired():
                self.escapes_failed += 1
                return False
            await self.clock.sleep(self.clock.poll_ms)

    # ---- queries (each returns None when the modem did not answer as expected)
    async def sim(self):
        """"ready", "pin", "puk", "absent" (CME 10), "busy" (CME 14, still reading the SIM),
        "error" or None (no answer)."""
        rc = await self.cmd(b"AT+CPIN?", 5000)
        if rc == RC_OK:
            v = self.info(b"+CPIN: ")
            return parse_cpin(v) if v is not None else "error"
        if rc == RC_CME:
            if self.cme == CME_SIM_NOT_INSERTED:
                return "absent"
            if self.cme == CME_SIM_BUSY:
                return "busy"
            if self.cme == CME_SIM_WRONG:
                return "wrong"
            return "error"
        return None if rc == RC_TIMEOUT else "error"

    async def unlock(self, pin):
        return await self.cmd(b'AT+CPIN="' + pin.encode() + b'"', 5000) == RC_OK

    async def iccid(self):
        if await self.cmd(b"AT+CICCID", 2000) != RC_OK:
            return None
        v = self.info(b"+ICCID: ")
        return parse_iccid(v) if v is not None else None

    async def csq(self):
        """(rssi code, dBm or None), or (None, None)."""
        if await self.cmd(b"AT+CSQ", 2000) != RC_OK:
            return None, None
        v = self.info(b"+CSQ: ")
        return parse_csq(v) if v is not None else (None, None)

    async def registration(self):
        """The best <stat> of +CEREG (LTE) and +CREG (2G/3G fallback): 1 home or 5 roaming when
        registered on either; None when neither answered."""
        best = None
        for c, p in ((b"AT+CEREG?", b"+CEREG: "), (b"AT+CREG?", b"+CREG: ")):
            if await self.cmd(c, 2000) != RC_OK:
                continue
            v = self.info(p)
            st = parse_reg(v) if v is not None else None
            if st == 1 or st == 5:
                return st
            if st is not None and (best is None or st == 3):
                best = st
        return best

    async def network_time(self):
        """UTC seconds since 2020 from AT+CCLK? (network time, NITZ), or None."""
        if await self.cmd(b"AT+CCLK?", 2000) != RC_OK:
            return None
        v = self.info(b"+CCLK: ")
        return parse_cclk(v) if v is not None else None

    async def set_apn(self, apn):
        return await self.cmd(b'AT+CGDCONT=1,"IP","' + apn.encode() + b'"', 2000) == RC_OK

    async def attached(self):
        if await self.cmd(b"AT+CGATT?", 2000) != RC_OK:
            return None
        v = self.info(b"+CGATT: ")
        return None if v is None else _int(v) == 1

    async def attach(self):
        return await self.cmd(b"AT+CGATT=1", 30000) == RC_OK

    async def dial(self):
        """ATD*99#: RC_CONNECT when the modem switched to data mode (PPP follows)."""
        return await self.cmd(b"ATD*99#", 15000)

    async def hangup(self):
        return await self.cmd(b"ATH", 5000)
