# Board `esp32_lte`: an ESP32 with an LTE modem on the same PCB (LilyGO T-SIM7600X / T-A7670X
# class: ESP32-WROVER-E, 4 MB or 16 MB flash, 8 MB PSRAM) running MicroPython's esp32 port.
# Wiring tables and the reasons for this plan: docs/boards.md.
#
# Bus plan. The ESP32 has three UARTs: UART0 is the USB console/REPL, UART1 talks to the modem
# (PPP), which leaves one for eight serial modules. So:
#   UART2   GPIO19 RX / GPIO18 TX     GNSS receiver (NMEA 9600, 1 Hz streaming) on the one free
#                                     hardware UART: 2 KiB receive buffer, so a stalled io loop
#                                     (TLS handshake, flash write) loses no sentences
#   I2C0    GPIO21 SDA / GPIO22 SCL   100 kHz: SCD41 (0x62), SHT4x (0x44) and an SC16IS752
#                                     dual I2C-UART bridge (0x48, A0 = A1 = VDD; 14.7456 MHz):
#     bridge channel A, 9600 baud     -> two 74HC4051 (S0..S2 on the bridge's IO0..IO2) to the
#                                        modules that only answer when asked (Q&A/passive mode):
#                                        ch0 PMS5003, ch1..4 ZE03 O3/NO2/SO2/CO, ch5 ZE08,
#                                        ch6..7 spare
#     bridge channel B, 4800 baud     -> MAX3485 RS-485 transceiver, DE/RE driven by the bridge's
#                                        RTSB (automatic direction), to the Modbus noise meter
# Why not GNSS on the bridge: its FIFO holds 64 bytes, 67 ms of NMEA at 9600 baud; the Q&A
# answers (at most 32 bytes, only when asked) fit it, a streaming receiver does not.
#
# LTE: the modem is brought up with AT commands and then carries IP through MicroPython's
# network.PPP on UART1. THIS PART IS A STUB IN THE SENSE THAT IT HAS NOT RUN ON HARDWARE: it is
# written against MicroPython's documented network.PPP API (esp32 port) and the SIMCom AT manual,
# but neither a modem nor the esp32 port can be exercised in this repository's tests (they only
# compile and import this file under the Unix port with a fake `machine`). Check it on a bench
# board before a fleet rollout (docs/boards.md, "LTE bring-up").
#
# Config: /config.json (tools/provision.py): {"device_id", "broker", "apn", "apn_user",
# "apn_password", "sim_pin", "modules": [...], "cfg": {module: driver cfg}}.

import time

import machine

from firmware.boardbase import BoardBase
from firmware.drivers.nmea import GNSS
from boards.buses import (BridgeGPIOSelect, MuxUART, SC16IS7xx, epoch_offset_s, load_config,
                          make_driver)

NAME = "esp32_lte"

# -- pins: LilyGO T-SIM7600X (the T-A7670X swaps MODEM_TX/RX and uses GPIO12 as POWER_ON);
#    check your board revision's pin map before soldering -----------------------------------------
CONSOLE_UART = 0     # GPIO1 TX / GPIO3 RX through the USB-serial chip: the REPL, left alone
MODEM_UART = 1
MODEM_TX = 27        # -> modem RXD
MODEM_RX = 26        # <- modem TXD
MODEM_PWRKEY = 4     # pulse high >= 500 ms to power the modem on (inverted by a transistor)
MODEM_FLIGHT = 25    # high: RF on (low = flight mode)
MODEM_BAUD = 115200
GNSS_UART = 2
GNSS_TX = 18         # -> receiver RX (configuration only)
GNSS_RX = 19         # <- receiver TX
GNSS_BAUD = 9600
I2C_ID = 0
I2C_SDA = 21
I2C_SCL = 22
I2C_HZ = 100000      # SC16IS752 and the Sensirion parts allow 400 kHz; 100 kHz for the cable
BRIDGE_ADDR = 0x48   # SC16IS752 with A1 = A0 = VDD
BRIDGE_XTAL_HZ = 14745600
MUX_CH_BRIDGE = 0    # bridge channel A feeds the mux
RS485_CH_BRIDGE = 1  # bridge channel B drives the MAX3485

# name: (mux channel, driver module, class, cfg, answer bytes)
MUX_MODULES = {
    "pms5003": (0, "pms5003", "PMS5003", {}, 32),
    "ze03_o3": (1, "ze03", "ZE03", {"gas": "o3"}, 9),
    "ze03_no2": (2, "ze03", "ZE03", {"gas": "no2"}, 9),
    "ze03_so2": (3, "ze03", "ZE03", {"gas": "so2"}, 9),
    "ze03_co": (4, "ze03", "ZE03", {"gas": "co"}, 9),
    "ze08": (5, "ze08", "ZE08", {}, 9),
}
RS485_MODULES = {
    "modbus_noise": ("modbus_noise", "ModbusNoise", {"baud": 4800}),
}
I2C_MODULES = {
    "scd4x": (0x62, "scd4x", "SCD4x", {}),
    "sht4x": (0x44, "sht4x", "SHT4x", {}),
}
DEFAULT_KIT = ("pms5003", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise",
               "scd4x", "sht4x")

ANSWER_TIMEOUT_MS = 3000   # six modules answer in turn through the mux
MUX_HOLD_MS = 600
SEG_BYTES = 65536


JOURNAL_PARTITION = "journal"   # the raw data partition of the project's partition table


class Board(BoardBase):
    NAME = NAME
    state_dir = "/data"

    def __init__(self, config=None):
        # config: a dict, the path of a JSON file, or None for the device's /config.json
        if config is None or isinstance(config, str):
            cfg = load_config(config or "/config.json")
        else:
            cfg = config
        self.cfg = cfg
        self.device_id = cfg.get("device_id", "esp32-001").encode()
        broker = cfg.get("broker", "127.0.0.1:1883")
        host, _, port = broker.rpartition(":")
        self.broker_host = host or "127.0.0.1"
        self.broker_port = int(port)
        self.answer_timeout_ms = ANSWER_TIMEOUT_MS
        kit = cfg.get("modules") or DEFAULT_KIT
        self.plan = []
        self.gnss_uart = machine.UART(GNSS_UART, baudrate=GNSS_BAUD, tx=GNSS_TX, rx=GNSS_RX,
                                      rxbuf=2048)
        self.gnss = GNSS(self.gnss_uart)
        self.plan.append(("gnss", "uart%d" % GNSS_UART, "GPIO%d" % GNSS_RX))
        self.i2c = machine.I2C(I2C_ID, sda=machine.Pin(I2C_SDA), scl=machine.Pin(I2C_SCL),
                               freq=I2C_HZ)
        self.bridge_a = None
        self.bridge_b = None
        self.mux = None
        self.sensors = []
        self.by_name = {}
        dcfgs = cfg.get("cfg", {})
        for name in kit:
            if name in MUX_MODULES:
                if self.mux is None:
                    self.bridge_a = SC16IS7xx(self.i2c, BRIDGE_ADDR, MUX_CH_BRIDGE, 9600,
                                              BRIDGE_XTAL_HZ)
                    self.mux = MuxUART(self.bridge_a, BridgeGPIOSelect(self.bridge_a, 3),
                                       self._ticks, hold_ms=MUX_HOLD_MS)
                ch, mod, cls, dcfg, n = MUX_MODULES[name]
                c = dict(dcfg)
                c["timeout_ms"] = ANSWER_TIMEOUT_MS
                c.update(dcfgs.get(name, {}))
                d = make_driver(mod, cls, self.mux.port(ch, n, 9600), c)
                self.plan.append((name, "bridge-a-mux", "ch%d" % ch))
            elif name in RS485_MODULES:
                mod, cls, dcfg = RS485_MODULES[name]
                c = dict(dcfg)
                c["timeout_ms"] = 1000
                c.update(dcfgs.get(name, {}))
                self.bridge_b = SC16IS7xx(self.i2c, BRIDGE_ADDR, RS485_CH_BRIDGE,
                                          c.get("baud", 4800), BRIDGE_XTAL_HZ, rs485=True)
                d = make_driver(mod, cls, self.bridge_b, c)
                self.plan.append((name, "bridge-b-rs485", "addr%d" % c.get("address", 1)))
            elif name in I2C_MODULES:
                addr, mod, cls, dcfg = I2C_MODULES[name]
                c = dict(dcfg)
                c["address"] = addr
                c.update(dcfgs.get(name, {}))
                d = make_driver(mod, cls, self.i2c, c)
                self.plan.append((name, "i2c%d" % I2C_ID, "0x%02x" % addr))
            else:
                raise ValueError("module %r is not wired on %s" % (name, NAME))
            self.sensors.append(d)
            self.by_name[name] = d
        self.modem_uart = None
        self.ppp = None
        self._wdt = None

    def bus_plan(self):
        """[(module, bus, channel/address)]: what sits where (tests, docs, the status message)."""
        return list(self.plan)

    def _ticks(self):
        # late-bound, so a replaced board clock (tests) also drives the mux's timeouts
        return self.ticks_ms()

    # -- LTE (untested on hardware, see the header) -------------------------------------------
    def _at(self, cmd, expect=b"OK", timeout_ms=3000):
        """Send an AT command, wait for `expect` or ERROR. Blocking: boot-time only."""
        u = self.modem_uart
        while u.any():
            if not u.read():
                break
        u.write(cmd + b"\r")
        buf = b""
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
            if u.any():
                buf += u.read() or b""
                if expect in buf:
                    return buf
                if b"ERROR" in buf:
                    break
            time.sleep_ms(20)
        self.log("modem: %s -> %r" % (cmd, buf[-64:]))
        return None

    def network_up(self, timeout_ms=60000):
        """Power the modem, attach with the configured APN, dial and start PPP on UART1."""
        import network
        if self.ppp is not None and self.ppp.isconnected():
            return True
        if self.modem_uart is None:
            self.modem_uart = machine.UART(MODEM_UART, baudrate=MODEM_BAUD, tx=MODEM_TX,
                                           rx=MODEM_RX, rxbuf=4096)
            machine.Pin(MODEM_FLIGHT, machine.Pin.OUT, value=1)
            key = machine.Pin(MODEM_PWRKEY, machine.Pin.OUT, value=0)
            key.value(1)
            time.sleep_ms(1000)          # SIM7600: PWRKEY pulse >= 500 ms
            key.value(0)
        t0 = time.ticks_ms()
        while self._at(b"AT", timeout_ms=1000) is None:
            if time.ticks_diff(time.ticks_ms(), t0) > 20000:
                return False             # modem does not answer (power, wiring, baud)
        self._at(b"ATE0")
        pin = self.cfg.get("sim_pin")
        if pin and self._at(b"AT+CPIN?", b"READY") is None:
            self._at(b'AT+CPIN="' + pin.encode() + b'"')
        apn = self.cfg.get("apn", "")
        self._at(b'AT+CGDCONT=1,"IP","' + apn.encode() + b'"')
        while self._at(b"AT+CGATT?", b"+CGATT: 1", 2000) is None:
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
                return False
            time.sleep_ms(1000)
        self.rssi = self._csq()
        if self._at(b"ATD*99#", b"CONNECT", 10000) is None:
            return False
        self.ppp = network.PPP(self.modem_uart)
        self.ppp.active(True)
        user = self.cfg.get("apn_user")
        if user:
            self.ppp.connect(authmode=self.ppp.AUTH_PAP, username=user,
                             password=self.cfg.get("apn_password", ""))
        else:
            self.ppp.connect()
        while not self.ppp.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
                return False
            time.sleep_ms(200)
        return True

    rssi = None

    def _csq(self):
        r = self._at(b"AT+CSQ", b"+CSQ:")
        if r is None:
            return None
        try:
            v = int(r.split(b"+CSQ:")[1].split(b",")[0])
        except (ValueError, IndexError):
            return None
        return None if v == 99 else -113 + 2 * v

    def rssi_dbm(self):
        # measured before dialling: in PPP data mode the modem's only UART carries IP, and AT
        # commands would need the +++ escape or CMUX
        return self.rssi

    # -- supervision and time -------------------------------------------------------------------
    def open_journal(self):
        """The record ring on the raw "journal" partition (`envbox flash` writes the partition
        table that has one: one write per record, one erase per 4 KiB sector and lap); without
        it, segment files on littlefs (about 21 x the flash writes: docs/firmware.md, "Flash")."""
        try:
            import esp32
            p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=JOURNAL_PARTITION)
        except (ImportError, AttributeError):
            p = None
        if p:
            from firmware.journal_ring import RingJournal
            return RingJournal(p[0]).open()
        self.log("no %r partition: journal in littlefs files" % JOURNAL_PARTITION)
        return BoardBase.open_journal(self)

    def reset_cause(self):
        c = machine.reset_cause()
        if c == getattr(machine, "WDT_RESET", -1):
            return "watchdog"
        if c == getattr(machine, "PWRON_RESET", -1):
            return "power_on"
        if c == getattr(machine, "DEEPSLEEP_RESET", -1):
            return "deep_sleep"
        if c == getattr(machine, "SOFT_RESET", -1):
            return "soft"
        if c == getattr(machine, "HARD_RESET", -1):
            return "hard"
        return None

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)   # esp32: calling again sets a new timeout

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def set_rtc(self, t_s2020):
        t = time.gmtime(t_s2020 + epoch_offset_s())
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    def ntp_s2020(self):
        if self.ppp is None or not self.ppp.isconnected():
            return None
        try:
            import ntptime
            return ntptime.time() - epoch_offset_s()
        except Exception:
            return None


def make():
    b = Board()
    if not b.network_up():
        b.log("LTE not up at boot; the app samples into the journal and retries the broker")
    return b
