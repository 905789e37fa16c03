# Bus classes the hardware boards need beyond machine.UART/machine.I2C, with machine.UART's read
# API (any / readinto / write) so the drivers use them unchanged:
#
#   SC16IS7xx  one channel of an NXP SC16IS740/750/752/762 I2C-to-UART bridge (two UARTs per
#              SC16IS752, 64-byte FIFOs, 16 I2C addresses by A0/A1, 8 GPIOs, automatic RS-485
#              direction control on RTS)
#   MuxUART    one UART shared by several question-and-answer modules through an analog
#              multiplexer (two 74HC4051: one routes the board's TX to the selected module's RX,
#              the other the selected module's TX to the board's RX; S0..S2 select). Only Q&A
#              modules can share it: a module speaks only when asked, while it is selected.
#              Each module gets a MuxPort; a port's write selects its channel and owns the line
#              until its answer is in (reply_len bytes, or a quiet gap after some bytes, or
#              hold_ms without an answer); writes from other ports meanwhile wait in the port's
#              own buffer and go out in turn. A port that does not own the line reads nothing.
#
# On a device this file is /lib/envbox/boards/buses.py (tools/provision.py copies it); it runs under
# MicroPython and, for the tests, CPython. Nothing here allocates after construction: pending
# writes are copied into preallocated buffers and written through preallocated memoryviews.

from envbox.firmware.boardbase import BoardBase
from envbox.firmware.compat import ticks_diff, ticks_ms

try:
    from time import sleep_us as _sleep_us
except ImportError:  # CPython
    _sleep_us = None

# SC16IS7xx registers (datasheet SC16IS752/762 rev. 9, table 10); sub-address = reg << 3 | ch << 1
_RHR = 0x00         # read: receive FIFO
_THR = 0x00         # write: transmit FIFO
_DLL = 0x00         # with LCR[7] = 1
_DLH = 0x01
_FCR = 0x02
_LCR = 0x03
_MCR = 0x04
_LSR = 0x05
_TXLVL = 0x08       # free spaces in the TX FIFO
_RXLVL = 0x09       # bytes in the RX FIFO
_IODIR = 0x0A       # GPIO direction, 1 = output (shared by both channels)
_IOSTATE = 0x0B
_IOCONTROL = 0x0E
_EFCR = 0x0F
_FIFO = 64

LCR_8N1 = 0x03
LCR_DIVISOR_LATCH = 0x80
FCR_FIFO_RESET = 0x07           # enable FIFOs, reset RX and TX FIFO
EFCR_RS485_DE_HIGH = 0x30       # RTSCON (transmitter drives RTS) + RTSINVER (RTS = 1 while sending)
IOCONTROL_SRESET = 0x08


class SC16IS7xx:
    """One UART channel of an SC16IS7xx on machine.I2C (readfrom_mem_into/writeto_mem).

    rs485=True: the chip drives RTS high while it transmits (EFCR RTSCON|RTSINVER), wired to DE
    and /RE of a MAX3485: half-duplex direction without firmware timing. I2C errors are counted
    (i2c_errors) and look like an idle line to the driver, never an exception."""

    def __init__(self, i2c, addr=0x48, channel=0, baud=9600, xtal_hz=14745600, rs485=False):
        self._i2c = i2c
        self.addr = addr
        self.channel = channel
        self.xtal_hz = xtal_hz
        self._b1 = bytearray(1)
        self._rx = bytearray(_FIFO)
        mv = memoryview(self._rx)
        self._views = [mv[:k] for k in range(_FIFO + 1)]
        self.i2c_errors = 0
        self.baud = 0
        self.init(baud)
        if rs485:
            self._set(_EFCR, EFCR_RS485_DE_HIGH)

    def _sub(self, reg):
        return (reg << 3) | (self.channel << 1)

    def _set(self, reg, v):
        self._b1[0] = v
        self._i2c.writeto_mem(self.addr, self._sub(reg), self._b1)

    def _get(self, reg):
        self._i2c.readfrom_mem_into(self.addr, self._sub(reg), self._b1)
        return self._b1[0]

    def divisor(self, baud):
        # prescaler 1: baud = xtal / (16 * divisor), rounded to the nearest divisor
        return (self.xtal_hz + 8 * baud) // (16 * baud)

    def init(self, baudrate=9600, **kw):
        """Line settings 8N1 at `baudrate`; resets the FIFOs (machine.UART.init's name)."""
        d = self.divisor(baudrate)
        try:
            self._set(_LCR, LCR_DIVISOR_LATCH)
            self._set(_DLL, d & 0xFF)
            self._set(_DLH, d >> 8)
            self._set(_LCR, LCR_8N1)
            self._set(_FCR, FCR_FIFO_RESET)
            self.baud = baudrate
        except OSError:
            self.i2c_errors += 1

    def any(self):
        try:
            return self._get(_RXLVL)
        except OSError:
            self.i2c_errors += 1
            return 0

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        lvl = self.any()
        if n > lvl:
            n = lvl
        if n > _FIFO:
            n = _FIFO
        if n <= 0:
            return None
        try:
            # RHR does not auto-increment: a burst read drains n bytes of the FIFO
            self._i2c.readfrom_mem_into(self.addr, self._sub(_RHR), self._views[n])
        except OSError:
            self.i2c_errors += 1
            return None
        rx = self._rx
        for i in range(n):
            buf[i] = rx[i]
        return n

    def write(self, data):
        try:
            room = self._get(_TXLVL)
            n = len(data)
            if n > room:
                # commands are at most 19 bytes and the FIFO holds 64; a full FIFO means the
                # line is stuck: drop the write rather than block
                return 0
            self._i2c.writeto_mem(self.addr, self._sub(_THR), data)
            return n
        except OSError:
            self.i2c_errors += 1
            return 0

    # the chip's 8 GPIOs (IO0..IO7) are shared by both channels
    def gpio_output(self, mask):
        try:
            self._i2c.writeto_mem(self.addr, _IODIR << 3, bytes((mask,)))
        except OSError:
            self.i2c_errors += 1

    def gpio_write(self, value):
        self._b1[0] = value
        try:
            self._i2c.writeto_mem(self.addr, _IOSTATE << 3, self._b1)
        except OSError:
            self.i2c_errors += 1


class PinSelect:
    """Mux select lines on machine.Pin outputs (S0 = lowest bit)."""

    def __init__(self, pins):
        self.pins = pins

    def __call__(self, ch):
        for i in range(len(self.pins)):
            self.pins[i].value((ch >> i) & 1)


class BridgeGPIOSelect:
    """Mux select lines on SC16IS7xx GPIOs IO0..IO(n-1): the mux sits on the bridge's board and
    costs the microcontroller no pins."""

    def __init__(self, bridge, nbits=3):
        self.bridge = bridge
        self.mask = (1 << nbits) - 1
        bridge.gpio_output(self.mask)

    def __call__(self, ch):
        self.bridge.gpio_write(ch & self.mask)


class MuxUART:
    """A UART shared by Q&A modules through an analog multiplexer. `select(ch)` drives the
    select lines; `ticks` is the board's ms clock."""

    def __init__(self, uart, select, ticks=ticks_ms, hold_ms=600, gap_ms=20, settle_us=0,
                 baud=9600):
        self.uart = uart
        self.baud = baud             # the UART's current baud rate
        self._select = select
        self._ticks = ticks
        self.hold_ms = hold_ms       # longest wait for an answer before the line is released
        self.gap_ms = gap_ms         # silence after some bytes that ends an answer
        self.settle_us = settle_us
        self.ports = []
        self.owner = None
        self.current = -1            # channel selected now
        self._last = 0               # index in ports of the last owner (round robin)
        self._t_tx = 0
        self._t_rx = 0
        self._scratch = bytearray(16)
        # counters
        self.switches = 0
        self.flushed_bytes = 0
        self.queued = 0
        self.overflows = 0           # a pending write did not fit its port's buffer (dropped)
        self.silent = 0              # owners released after hold_ms without any answer

    def port(self, channel, reply_len=0, baud=9600):
        p = MuxPort(self, channel, reply_len, baud)
        self.ports.append(p)
        return p

    def _flush(self):
        u = self.uart
        s = self._scratch
        for _ in range(8):
            if not u.any():
                return
            k = u.readinto(s)
            if not k:
                return
            self.flushed_bytes += k

    def _take(self, p):
        """Make p the owner: select its channel (and baud), drop bytes of the previous one."""
        self.owner = p
        p._got = 0
        if self.current != p.channel:
            self._select(p.channel)
            if p.baud != self.baud:
                # e.g. a Modbus meter at 4800 among 9600-baud modules
                self.uart.init(baudrate=p.baud)
                self.baud = p.baud
            if self.settle_us and _sleep_us is not None:
                _sleep_us(self.settle_us)
            self.current = p.channel
            self.switches += 1
        # whatever is in the receive buffer now came from before this request (another
        # channel's late answer, a glitch while switching): not this module's answer
        self._flush()
        self._t_tx = self._ticks()

    def service(self):
        """Release a finished or silent owner; start the next queued write. Called from every
        port method, so the drivers' polling drives it."""
        o = self.owner
        if o is not None:
            now = self._ticks()
            if o._expect and o._got >= o._expect:
                self.owner = None
            elif o._got and ticks_diff(now, self._t_rx) >= self.gap_ms:
                self.owner = None
            elif ticks_diff(now, self._t_tx) >= self.hold_ms:
                if not o._got:
                    self.silent += 1
                self.owner = None
        if self.owner is None:
            n = len(self.ports)
            for k in range(1, n + 1):
                i = (self._last + k) % n
                p = self.ports[i]
                if p._npend:
                    self._last = i
                    self._take(p)
                    p._expect = p._nq * p.reply_len
                    self.uart.write(p._views[p._npend])
                    p._npend = 0
                    p._nq = 0
                    return


class MuxPort:
    """One module's view of a MuxUART, with machine.UART's API."""

    PEND = 32                         # longest queued command bytes (two Winsen commands: 18)

    def __init__(self, mux, channel, reply_len, baud):
        self.mux = mux
        self.channel = channel
        self.reply_len = reply_len    # bytes of a complete answer (0: end on the quiet gap)
        self.baud = baud
        self._got = 0
        self._expect = 0
        self._pend = bytearray(self.PEND)
        mv = memoryview(self._pend)
        self._views = [mv[:k] for k in range(self.PEND + 1)]
        self._npend = 0
        self._nq = 0

    def any(self):
        m = self.mux
        m.service()
        if m.owner is not self:
            return 0
        return m.uart.any()

    def readinto(self, buf, nbytes=None):
        m = self.mux
        m.service()
        if m.owner is not self:
            return None
        k = m.uart.readinto(buf, len(buf) if nbytes is None else nbytes)
        if k:
            self._got += k
            m._t_rx = m._ticks()
        return k

    def write(self, data):
        m = self.mux
        m.service()
        n = len(data)
        if m.owner is None and not self._npend:
            m._take(self)
            self._expect = self.reply_len
            return m.uart.write(data)
        if m.owner is self:
            # a second command in the same exchange (e.g. mode switch, then read)
            self._expect += self.reply_len
            m._t_tx = m._ticks()
            return m.uart.write(data)
        if self._npend + n > self.PEND:
            m.overflows += 1
            return 0
        p = self._pend
        for i in range(n):
            p[self._npend + i] = data[i]
        self._npend += n
        self._nq += 1
        m.queued += 1
        return n


# -- helpers shared by the hardware boards ----------------------------------------------------------

def load_config(path="/config.json"):
    """The device's config (tools/provision.py writes it); {} when absent or unreadable."""
    import json
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def make_driver(mod, cls, bus, cfg):
    """envbox.firmware.drivers.<mod>.<cls>(bus, cfg), imported on demand (unfitted parts cost no RAM)."""
    m = __import__("envbox.firmware.drivers." + mod, None, None, (cls,))
    return getattr(m, cls)(bus, cfg)


# machine.reset_cause() values -> the names BoardBase.reset_cause() returns; a port without one
# of them (rp2 has only WDT_RESET and PWRON_RESET) never matches it
_RESET_CAUSES = (("WDT_RESET", "watchdog"), ("PWRON_RESET", "power_on"),
                 ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft"),
                 ("HARD_RESET", "hard"))


class McuBoard(BoardBase):
    """What the microcontroller boards (esp32_lte, pico_w) share on top of BoardBase: the
    config, the modules fitted with their driver configs, the bus plan, the reset cause. A
    board's __init__ calls setup(), then fit() per module, then sets its link."""

    state_dir = "/data"

    def setup(self, config, default_id, answer_timeout_ms):
        # config: a dict, the path of a JSON file, or None for the device's /config.json
        if config is None or isinstance(config, str):
            config = load_config(config or "/config.json")
        self.cfg = config
        # identity, broker login and TLS, config key: read as on every board (boardbase)
        self.load_net(config, default_id)
        self.answer_timeout_ms = answer_timeout_ms
        self.plan = []          # (module, bus, where): the bus plan, for tests and the status
        self.sensors = []
        self.by_name = {}
        self._wdt = None
        self.ntp_host = config.get("ntp_host")
        return config

    def fit(self, name, mod, cls, bus, dcfg, extra, bus_name, where):
        """Make module `name`'s driver on `bus`: its defaults `dcfg`, then the board's `extra`
        (timeout, address), then the config's "cfg": {name: {...}}; record where it sits."""
        c = dict(dcfg)
        c.update(extra)
        c.update(self.cfg.get("cfg", {}).get(name, {}))
        d = make_driver(mod, cls, bus, c)
        self.plan.append((name, bus_name, where))
        self.sensors.append(d)
        self.by_name[name] = d
        return d

    def bus_plan(self):
        """[(module, bus, channel/address)]: what sits where (tests, docs, the status message)."""
        return list(self.plan)

    def _ticks(self):
        # late-bound, so a replaced board clock (tests) also drives the mux's timeouts
        return self.ticks_ms()

    def reset_cause(self):
        import machine
        c = machine.reset_cause()
        for attr, name in _RESET_CAUSES:
            if c == getattr(machine, attr, -1):
                return name
        return None
