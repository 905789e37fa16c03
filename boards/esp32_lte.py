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
# LTE: the modem is brought up, watched and brought up again by the link supervisor
# (firmware/linkcell.py, with the SIMCom driver firmware/drivers/simcom.py), which then carries IP
# through MicroPython's network.PPP on UART1. The same supervisor and driver run in the tests
# under the Unix port against the simulator's model of the modem (tests/test_link_modem.py); what
# only a bench board can show (PWRKEY polarity and timing of your revision, network.PPP in your
# MicroPython build, the APN) is listed in docs/boards.md, "LTE bring-up".
#
# Config: /config.json (`envbox provision` writes it, `envbox flash` copies it): {"device_id",
# "broker", "modem": "sim7600" | "a7670", "apn", "apn_user", "apn_password", "sim_pin",
# "ntp_host", "modules": [...], "cfg": {module: driver cfg}} and the login, TLS and config key
# every board reads in BoardBase.load_net: "mqtt_password", "ca_pem", "tls_server_hostname",
# "config_key", "insecure" (docs/provisioning.md).

import machine

from envbox.boards.buses import BridgeGPIOSelect, McuBoard, MuxUART, SC16IS7xx
from envbox.firmware.drivers.nmea import GNSS

NAME = "esp32_lte"

# -- pins --------------------------------------------------------------------------------------------
CONSOLE_UART = 0     # GPIO1 TX / GPIO3 RX through the USB-serial chip: the REPL, left alone
MODEM_UART = 1
MODEM_BAUD = 115200
# The modem's pins differ between the two LilyGO boards (LilyGO-T-A76XX utilities.h,
# LILYGO_SIM7600X and LILYGO_T_A7670). tx/rx are the ESP32's side (tx -> modem RXD).
MODEM_PINS = {
    # T-SIM7600X: PWRKEY through an inverting transistor (high = pressed, 500 ms to start),
    # FLIGHT high = RF on, STATUS high while the modem runs, DTR low = awake, RI 33
    "sim7600": {"tx": 27, "rx": 26, "pwrkey": 4, "flight": 25, "status": 34, "dtr": 32},
    # T-A7670X: GPIO12 switches the modem's supply (must be high; on battery also right after
    # the ESP32 starts, or the board resets), RESET on GPIO5 is active high, DTR on 25, no STATUS
    # line (the supervisor knows the modem runs when it answers AT), PWRKEY 100 ms to start
    "a7670": {"tx": 26, "rx": 27, "pwrkey": 4, "poweron": 12, "reset": 5, "dtr": 25},
}
MODEM_RESET_ACTIVE = 1   # T-A7670X: MODEM_RESET_LEVEL HIGH
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


class Board(McuBoard):
    NAME = NAME

    def __init__(self, config=None):
        cfg = self.setup(config, "esp32-001", ANSWER_TIMEOUT_MS)
        kit = cfg.get("modules") or DEFAULT_KIT
        self.gnss_uart = machine.UART(GNSS_UART, baudrate=GNSS_BAUD, tx=GNSS_TX, rx=GNSS_RX,
                                      rxbuf=2048)
        self.gnss = GNSS(self.gnss_uart)
        self.plan.append(("gnss", "uart%d" % GNSS_UART, "GPIO%d" % GNSS_RX))
        self.i2c = machine.I2C(I2C_ID, sda=machine.Pin(I2C_SDA), scl=machine.Pin(I2C_SCL),
                               freq=I2C_HZ)
        self.bridge_a = None
        self.bridge_b = None
        self.mux = None
        for name in kit:
            if name in MUX_MODULES:
                if self.mux is None:
                    self.bridge_a = SC16IS7xx(self.i2c, BRIDGE_ADDR, MUX_CH_BRIDGE, 9600,
                                              BRIDGE_XTAL_HZ)
                    self.mux = MuxUART(self.bridge_a, BridgeGPIOSelect(self.bridge_a, 3),
                                       self._ticks, hold_ms=MUX_HOLD_MS)
                ch, mod, cls, dcfg, n = MUX_MODULES[name]
                self.fit(name, mod, cls, self.mux.port(ch, n, 9600), dcfg,
                         {"timeout_ms": ANSWER_TIMEOUT_MS}, "bridge-a-mux", "ch%d" % ch)
            elif name in RS485_MODULES:
                mod, cls, dcfg = RS485_MODULES[name]
                # the bridge's channel B runs at the meter's baud (its config may change it)
                own = cfg.get("cfg", {}).get(name, {})
                self.bridge_b = SC16IS7xx(self.i2c, BRIDGE_ADDR, RS485_CH_BRIDGE,
                                          own.get("baud", dcfg.get("baud", 4800)),
                                          BRIDGE_XTAL_HZ, rs485=True)
                self.fit(name, mod, cls, self.bridge_b, dcfg, {"timeout_ms": 1000},
                         "bridge-b-rs485", "addr%d" % own.get("address", dcfg.get("address", 1)))
            elif name in I2C_MODULES:
                addr, mod, cls, dcfg = I2C_MODULES[name]
                self.fit(name, mod, cls, self.i2c, dcfg, {"address": addr}, "i2c%d" % I2C_ID,
                         "0x%02x" % addr)
            else:
                raise ValueError("module %r is not wired on %s" % (name, NAME))
        self.modem_variant = cfg.get("modem", "sim7600")
        self.link = self._make_link(cfg)

    # -- LTE -----------------------------------------------------------------------------------
    def _make_link(self, cfg):
        from envbox.firmware.linkcell import CellLink
        variant = self.modem_variant
        if variant not in MODEM_PINS:
            raise ValueError("modem %r: one of %s" % (variant, ", ".join(sorted(MODEM_PINS))))
        p = MODEM_PINS[variant]
        pins = {}
        for name in ("poweron", "pwrkey", "reset", "flight", "dtr"):
            if name in p:
                # safe levels from the first instant: supply on, key released, reset released
                v = 1 if name in ("poweron", "flight") else (
                    1 - MODEM_RESET_ACTIVE if name == "reset" else 0)
                pins[name] = machine.Pin(p[name], machine.Pin.OUT, value=v)
        if "status" in p:
            pins["status"] = machine.Pin(p["status"], machine.Pin.IN)
        # 4 KiB: PPP frames arrive in bursts while the io loop may be busy with a flash write
        self.modem_uart = machine.UART(MODEM_UART, baudrate=MODEM_BAUD, tx=p["tx"], rx=p["rx"],
                                       rxbuf=4096)
        return CellLink(self, self.modem_uart, pins, _ppp, cfg, variant, MODEM_RESET_ACTIVE)

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
            from envbox.firmware.journal_ring import RingJournal
            return RingJournal(p[0]).open()
        self.log("no %r partition: journal in littlefs files" % JOURNAL_PARTITION)
        return McuBoard.open_journal(self)

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)   # esp32: calling again sets a new timeout

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()


def _ppp(uart):
    """network.PPP on the modem's UART (esp32 port; MicroPython 1.24+ API)."""
    import network
    return network.PPP(uart)


def make():
    # the link comes up in its own task (board.link.run()); the app samples meanwhile
    return Board()
