"""SIMCom LTE modem (SIM7600 series, A7670 series) as the box's LTE board wires it: the AT subset
the firmware uses (firmware/drivers/simcom.py), power through PWRKEY/POWERON/RESET, STATUS and DCD
outputs, PPP data mode after ATD*99#, and the ways it fails.

Bytes on the UART, as the real part sends them:

    command mode   echo (until ATE0), then "\\r\\n<info>\\r\\n" lines and a final result code
                   ("\\r\\nOK\\r\\n", "\\r\\nERROR\\r\\n", "\\r\\n+CME ERROR: 10\\r\\n", ...).
    boot           nothing until the boot time has passed, then "RDY" (SIM7600) or
                   "*ATREADY: 1" (A7670), "+CPIN: READY", "SMS DONE", "PB DONE" URCs.
    data mode      after ATD*99# -> "CONNECT 115200". The box's PPP talks to the modem's PPP
                   peer; the simulator does not carry IP over the pty: the box's first LCP
                   Configure-Request (a 0x7E-framed frame, PROTO 0xC021 code 1) is answered with a
                   Configure-Ack and the session is then "up": simulator/modem.py's proxy passes
                   the box's TCP traffic to the host's sockets only while it is up. "+++" with
                   1 s of silence before and after returns to command mode ("OK"; ATO resumes,
                   ATH hangs up). An LCP Terminate-Request from the box ends the call.
    carrier loss   the model sends an LCP Terminate-Request frame, then "\\r\\nNO CARRIER\\r\\n",
                   and is in command mode with no call; the proxy cuts the box's connections.

Pins (names as the microcontroller side sees them; values 0/1): inputs PWRKEY (1 = pressed),
POWERON (A7670 boards: the supply switch), RESET (A7670: active high), FLIGHT (SIM7600 boards:
1 = RF on), DTR; outputs STATUS (1 = powered on), DCD (0 = carrier, active low).

Power: a PWRKEY press of at least on_press_s while off starts the boot (boot_s until the first
answer); a press of at least off_press_s while on powers it down (after 1 s). AT+CPOF powers down.
The power state survives anything the box does to itself: a box that resets while the modem is
in data mode finds it still there.

Faults (attributes, settable while it runs; times are virtual Unix seconds):
    sim_inserted = False      AT+CPIN? -> +CME ERROR: 10; a SIM inserted while the modem runs is
                              seen at its next start (power cycle, RESET, AT+CFUN=1,1)
    no_service_until = t      searching (+CEREG: 0,2, CSQ 99) until t
    denied = True             registration denied (+CEREG: 0,3)
    boot_s = 40               slow boot
    hung = True               answers nothing (firmware wedged) until power cycled or reset
    drop_carrier(t)           NO CARRIER now (the network dropped the call)
    carrier_drop_every_s = s  NO CARRIER every s seconds of a call; outage_s of no service after
    nitz = False              AT+CCLK? keeps the modem's default date (no network time)

Counters (self.counters): commands, per-command counts, escapes, calls, carrier_drops,
power_ons, power_offs, resets, boots.
"""

import datetime

from . import SerialModel

EPOCH_2020 = 1577836800

# LCP (RFC 1661) frames as 0x7E-framed HDLC-like bytes (without FCS/escaping: the simulated peer
# only needs to recognise them; nothing else reads them)
LCP_CONF_REQ = b"\x7e\xff\x03\xc0\x21\x01\x01\x00\x04\x7e"
LCP_CONF_ACK = b"\x7e\xff\x03\xc0\x21\x02\x01\x00\x04\x7e"
LCP_TERM_REQ = b"\x7e\xff\x03\xc0\x21\x05\x02\x00\x04\x7e"
LCP_TERM_ACK = b"\x7e\xff\x03\xc0\x21\x06\x02\x00\x04\x7e"

VARIANTS = {
    #          boot_s, on_press_s, off_press_s, ready URC,       model id
    "sim7600": (12.0, 0.1, 2.5, b"RDY", b"SIMCOM_SIM7600G-H"),
    "a7670": (3.0, 0.05, 2.5, b"*ATREADY: 1", b"A7670E-LASE"),
}

ANSWER_S = 0.02        # command -> answer latency
GUARD_S = 1.0          # +++ guard time (S12 = 50 x 20 ms)


def crlf(s):
    return b"\r\n" + s + b"\r\n"


class SIMCom(SerialModel):
    name = "modem"

    def __init__(self, world=None, truth=None, seed=1, variant="sim7600", iccid=None,
                 sim_pin=None, csq=20, tz_quarters=32, powered=False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError("unknown variant %r" % variant)
        self.variant = variant
        boot_s, self.on_press_s, self.off_press_s, self.ready_urc, self.model_id = \
            VARIANTS[variant]
        self.boot_s = boot_s
        self.world = world
        self.iccid = iccid or "8986%015d" % (seed * 7919 % 10 ** 15)
        self.sim_pin = sim_pin
        self.csq_code = csq
        self.tz_quarters = tz_quarters
        # faults
        self.sim_inserted = True
        self.no_service_until = 0.0
        self.denied = False
        self.hung = False
        self.nitz = True
        self.carrier_drop_every_s = None
        self.outage_s = 0.0
        # pins (inputs as driven by the box)
        self.pin_in = {"PWRKEY": 0, "POWERON": 0 if variant == "a7670" else 1,
                       "RESET": 0, "FLIGHT": 1 if variant == "a7670" else 0, "DTR": 0}
        self._press_t = None
        # state
        self.power = "off"             # off | booting | on | stopping
        self._t_power = 0.0            # when booting ends / stopping ends
        self._sim_seen = False         # the SIM as read at the last start
        self._pin_ok = False
        self.echo = True
        self.cmee = 0
        self.cfun = 1
        self.apn = None
        self.registered_since = None
        self.mode = "command"          # command | data
        self.call = False              # a data call is up (data or escaped to command mode)
        self.ppp_up = False
        self.session = 0               # increments at each call start and end (the proxy's epoch)
        self._call_t = None
        self._next_drop = None
        self._line = bytearray()
        self._last_rx = None
        self._plus = 0
        self._esc_t = None
        self._pending = []             # (t, command) answered later (slow commands)
        if powered:
            # already running (e.g. left on by a previous box), RF on
            self.pin_in["FLIGHT"] = 1
            self.pin_in["POWERON"] = 1
            self.power = "on"
            self._sim_seen = self.sim_inserted

    # ---- what the rest of the simulator asks
    def passing(self, t=None):
        """True while the box's traffic passes (data mode, PPP up, carrier)."""
        return self.power == "on" and self.mode == "data" and self.call and self.ppp_up

    def pin_out(self, name, t):
        if name == "STATUS":
            return 1 if self.power in ("booting", "on", "stopping") else 0
        if name == "DCD":
            return 0 if self.call else 1
        if name == "RI":
            return 1
        raise KeyError(name)

    def set_pin(self, name, value, t):
        if name not in self.pin_in:
            raise KeyError(name)
        old = self.pin_in[name]
        value = 1 if value else 0
        self.pin_in[name] = value
        if name == "PWRKEY":
            if value and not old:
                self._press_t = t
            elif old and not value and self._press_t is not None:
                held = t - self._press_t
                self._press_t = None
                self._pwrkey(held, t)
        elif name == "POWERON" and not value and self.power != "off":
            self._off(t, "supply")
        elif name == "RESET" and value and not old:
            self.count("resets")
            if self.pin_in["POWERON"]:
                self._start(t)
        elif name == "FLIGHT":
            if self.variant == "sim7600" and not value:
                self._lose_service(t)

    def _pwrkey(self, held, t):
        if not self.pin_in["POWERON"]:
            return
        if self.power == "off" and held >= self.on_press_s:
            self.count("power_ons")
            self._start(t)
        elif self.power in ("on", "booting") and held >= self.off_press_s:
            self.count("power_offs")
            self.power = "stopping"
            self._t_power = t + 1.0
            self._end_call(t, notify=False)
            self.emit(t + 0.1, crlf(b"NORMAL POWER DOWN"))

    # ---- lifecycle
    def _start(self, t):
        self.cancel_output()
        self.count("boots")
        self.power = "booting"
        self._t_power = t + self.boot_s
        self.hung = False
        self._reset_state(t)

    def _reset_state(self, t):
        self.echo = True
        self.cmee = 0
        self.cfun = 1
        self._pin_ok = False
        self.registered_since = None
        self._end_call(t, notify=False)
        self._line.clear()
        self._pending.clear()

    def _off(self, t, why):
        self.power = "off"
        self._end_call(t, notify=False)
        # what it said before it went down (the OK to AT+CPOF) still goes out
        import heapq
        self._queue[:] = [q for q in self._queue if q[0] <= t]
        heapq.heapify(self._queue)
        self._pending.clear()

    def _boot_done(self, t):
        self.power = "on"
        self._sim_seen = self.sim_inserted
        out = crlf(self.ready_urc)
        if self._sim_seen:
            out += crlf(b"+CPIN: READY" if not self.sim_pin else b"+CPIN: SIM PIN")
            out += crlf(b"SMS DONE") + crlf(b"PB DONE")
        else:
            out += crlf(b"+CPIN: SIM REMOVED")
        self.emit(t, out)

    # ---- network
    def sim_ready(self):
        return self._sim_seen and (not self.sim_pin or self._pin_ok)

    def rf_on(self):
        return self.cfun == 1 and (self.variant != "sim7600" or self.pin_in["FLIGHT"])

    def reg_stat(self, t):
        if not self.sim_ready() or not self.rf_on():
            return 0
        if self.denied:
            return 3
        if t < self.no_service_until:
            return 2
        if self.registered_since is None:
            # registration takes a couple of seconds after the SIM is ready
            self.registered_since = t + 2.0
        return 1 if t >= self.registered_since else 2

    def _lose_service(self, t, outage_s=0.0):
        self.registered_since = None
        if outage_s:
            self.no_service_until = max(self.no_service_until, t + outage_s)

    def drop_carrier(self, t, outage_s=None):
        """The network ends the call now (then no service for outage_s)."""
        if not self.call:
            return False
        self.count("carrier_drops")
        data = self.mode == "data"
        self._end_call(t, notify=True, data=data)
        self._lose_service(t, self.outage_s if outage_s is None else outage_s)
        return True

    def _end_call(self, t, notify, data=None):
        if not self.call:
            self.mode = "command"
            self.ppp_up = False
            return
        data = self.mode == "data" if data is None else data
        self.call = False
        self.ppp_up = False
        self.mode = "command"
        self.session += 1
        self._next_drop = None
        self._esc_t = None
        if notify:
            out = (LCP_TERM_REQ if data else b"") + crlf(b"NO CARRIER")
            self.emit(t + 0.05, out)

    # ---- time
    def next_tick(self):
        c = []
        if self.power in ("booting", "stopping"):
            c.append(self._t_power)
        if self._esc_t is not None:
            c.append(self._esc_t + GUARD_S)
        if self._next_drop is not None:
            c.append(self._next_drop)
        if self._pending:
            c.append(min(p[0] for p in self._pending))
        return min(c) if c else None

    def tick(self, t):
        if self.power == "booting" and t >= self._t_power:
            self._boot_done(t)
        if self.power == "stopping" and t >= self._t_power:
            self._off(t, "pwrkey")
        if self._esc_t is not None and t >= self._esc_t + GUARD_S:
            self._esc_t = None
            if self.mode == "data":
                self.mode = "command"
                self.count("escapes")
                self.emit(t, crlf(b"OK"))
        if self._next_drop is not None and t >= self._next_drop and self.call:
            self.drop_carrier(t)
        if self._pending:
            due = [p for p in self._pending if p[0] <= t]
            self._pending = [p for p in self._pending if p[0] > t]
            for pt, fn in due:
                fn(pt)

    # ---- bytes from the box
    def receive(self, data, t):
        if self.power != "on" or self.hung:
            self.count("bytes_ignored", len(data))
            return
        if self.mode == "data":
            self._data(data, t)
            return
        for b in data:
            if b == 0x0D:
                line = bytes(self._line)
                self._line.clear()
                if self.echo:
                    self.emit(t, line + b"\r")
                if line.strip():
                    self._command(line.strip(), t)
            elif b == 0x0A:
                continue
            elif len(self._line) < 256:
                self._line.append(b)
            else:
                self.count("line_overflow")

    def _data(self, data, t):
        # '+++' alone, after GUARD_S of silence, and followed by GUARD_S of silence
        quiet = self._last_rx is None or t - self._last_rx >= GUARD_S
        self._last_rx = t
        if data.strip(b"+") == b"" and (quiet or self._plus):
            self._plus += len(data)
            if self._plus == 3:
                self._esc_t = t
            elif self._plus > 3:
                self._plus = 0
                self._esc_t = None
            return
        self._plus = 0
        self._esc_t = None
        if LCP_CONF_REQ in data:
            self.ppp_up = True
            self.count("ppp_sessions")
            self.emit(t + ANSWER_S, LCP_CONF_ACK)
        if LCP_TERM_REQ in data:
            self.emit(t + ANSWER_S, LCP_TERM_ACK)
            self._end_call(t + ANSWER_S, notify=False)
            self.emit(t + 0.1, crlf(b"NO CARRIER"))

    # ---- commands
    def _answer(self, t, body=b"", rc=b"OK"):
        out = b""
        for line in ([body] if isinstance(body, bytes) and body else body or []):
            out += crlf(line)
        self.emit(t + ANSWER_S, out + crlf(rc))

    def _error(self, t, code):
        self.emit(t + ANSWER_S, crlf(b"+CME ERROR: %d" % code) if self.cmee else crlf(b"ERROR"))

    def _command(self, line, t):
        self._last_rx = t
        self.count("commands")
        up = line.upper()
        if not up.startswith(b"AT"):
            self.emit(t + ANSWER_S, crlf(b"ERROR"))
            return
        c = up[2:]
        self.count("cmd:" + (c.split(b"=")[0].split(b"?")[0].decode(errors="replace") or "AT"))
        if c == b"":
            return self._answer(t)
        if c in (b"E0", b"E1"):
            self.echo = c == b"E1"
            return self._answer(t)
        if c.startswith(b"+CMEE="):
            self.cmee = int(c[6:] or b"0")
            return self._answer(t)
        if c in (b"I", b"+CGMM"):
            return self._answer(t, self.model_id)
        if c == b"+CPIN?":
            if not self._sim_seen:
                return self._error(t, 10)
            return self._answer(t, b"+CPIN: READY" if self.sim_ready() else b"+CPIN: SIM PIN")
        if c.startswith(b"+CPIN="):
            if not self._sim_seen:
                return self._error(t, 10)
            given = line[7:].strip(b'"')
            if self.sim_pin and given.decode() == self.sim_pin:
                self._pin_ok = True
                return self._answer(t)
            return self._error(t, 16)
        if c in (b"+CICCID", b"+CCID"):
            if not self._sim_seen:
                return self._error(t, 10)
            return self._answer(t, b"+ICCID: " + self.iccid.encode())
        if c == b"+CSQ":
            code = self.csq_code if self.rf_on() and t >= self.no_service_until else 99
            return self._answer(t, b"+CSQ: %d,99" % code)
        for q in (b"+CEREG?", b"+CREG?", b"+CGREG?"):
            if c == q:
                return self._answer(t, b"%s: 0,%d" % (q[:-1], self.reg_stat(t)))
        if c.startswith(b"+CEREG=") or c.startswith(b"+CREG=") or c.startswith(b"+CGREG="):
            return self._answer(t)
        if c.startswith(b"+CGDCONT="):
            parts = line[10:].split(b",")
            if len(parts) >= 3:
                self.apn = parts[2].strip(b'"').decode(errors="replace")
                return self._answer(t)
            return self._answer(t, rc=b"ERROR")
        if c == b"+CGATT?":
            return self._answer(t, b"+CGATT: %d" % (1 if self.reg_stat(t) in (1, 5) else 0))
        if c == b"+CGATT=1":
            if self.reg_stat(t) in (1, 5):
                return self._answer(t)
            return self._error(t, 30)     # no network service
        if c in (b"D*99#", b"D*99***1#") or c.startswith(b"+CGDATA="):
            return self._dial(t)
        if c == b"O":
            if self.call:
                self.mode = "data"
                self._plus = 0
                self._last_rx = t
                return self.emit(t + ANSWER_S, crlf(b"CONNECT 115200"))
            return self.emit(t + ANSWER_S, crlf(b"NO CARRIER"))
        if c in (b"H", b"H0"):
            if self.call:
                self.count("hangups")
            self._end_call(t, notify=False)
            return self._answer(t)
        if c == b"+CCLK?":
            return self._answer(t, b'+CCLK: "%s"' % self._cclk(t))
        if c in (b"+CPOF", b"+CPOWD=1"):
            self.count("power_offs")
            self._answer(t)
            self.power = "stopping"
            self._t_power = t + 1.0
            self._end_call(t, notify=False)
            return
        if c == b"+CFUN=1,1":
            self._answer(t)
            self._pending.append((t + 0.5, self._start))
            return
        if c == b"+CFUN?":
            return self._answer(t, b"+CFUN: %d" % self.cfun)
        if c in (b"+CFUN=0", b"+CFUN=1", b"+CFUN=4"):
            self.cfun = int(c[6:])
            if self.cfun != 1:
                self._lose_service(t)
            return self._answer(t)
        if c in (b"+CTZU=1", b"+CTZU=0", b"&D1", b"&D0", b"&D2", b"+CSCLK=0", b"+IPR=115200"):
            return self._answer(t)
        self.count("unknown_commands")
        self.emit(t + ANSWER_S, crlf(b"ERROR"))

    def _dial(self, t):
        if self.reg_stat(t) not in (1, 5) or not self.apn:
            return self.emit(t + 0.5, crlf(b"NO CARRIER"))
        self.call = True
        self.mode = "data"
        self.ppp_up = False
        self.session += 1
        self.count("calls")
        self._call_t = t
        self._plus = 0
        self._last_rx = t
        if self.carrier_drop_every_s:
            self._next_drop = t + self.carrier_drop_every_s
        self.emit(t + 0.3, crlf(b"CONNECT 115200"))

    def _cclk(self, t):
        if self.nitz and self.registered_since is not None and t >= self.registered_since:
            local = t + self.tz_quarters * 900
            q = self.tz_quarters
        else:
            # no network time yet: the modem counts from its default date
            local = (315964800 if self.variant == "sim7600" else 0) + (t - self._t_power)
            q = 0
        d = datetime.datetime.fromtimestamp(int(local), datetime.timezone.utc)
        return (d.strftime("%y/%m/%d,%H:%M:%S") + ("%+03d" % q)).encode()
