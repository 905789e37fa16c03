# Board `pico_w`: Raspberry Pi Pico W (RP2040, 2 MB flash, Wi-Fi via the CYW43439) running
# MicroPython's rp2 port. Wiring tables and the reasons for this plan: docs/boards.md.
#
# Bus plan (the RP2040 has two hardware UARTs; eight serial modules do not fit one each):
#   UART0  GP0 TX / GP1 RX      GNSS receiver, NMEA 9600, streaming 1 Hz: its own UART with a
#                               2 KiB receive buffer (2 s of NMEA if the io loop stalls)
#   UART1  GP4 TX / GP5 RX      through two 74HC4051 (S0..S2 = GP10..GP12) to the modules that
#                               only speak when asked (all in Q&A/passive mode):
#                                 ch0 PMS5003 (passive)   ch1 ZE03-O3   ch2 ZE03-NO2
#                                 ch3 ZE03-SO2            ch4 ZE03-CO   ch5 ZE08-CH2O (Q&A)
#                                 ch6 RS485 transceiver with automatic direction (noise meter,
#                                     Modbus RTU, its own baud: 4800 by default)
#                                 ch7 spare (MH-Z19B or SDS011 if fitted instead)
#   I2C1   GP2 SDA / GP3 SCL    SCD41 (0x62), SHT4x (0x44), 100 kHz, 4.7 k pull-ups to 3V3
# PIO could add UARTs, but a PIO UART has a 4-entry (8 with join) FIFO and needs an interrupt or
# DMA to keep up; the mux needs no code running between polls and no extra state machines.
#
# Config: /config.json on the device (tools/provision.py writes it):
#   {"device_id": "pico-001", "broker": "192.168.1.10:1883", "wifi_ssid": "...",
#    "wifi_password": "...", "ntp_host": "pool.ntp.org" (optional),
#    "modules": ["pms5003", "ze03_o3", ...] (default: all of the kit)}
# and the login, TLS and config key every board reads in BoardBase.load_net: "mqtt_password",
# "ca_pem", "tls_server_hostname", "config_key", "insecure" (docs/provisioning.md).
# The Wi-Fi station is supervised by firmware/linkwifi.py (joins, watches, re-joins with the
# station's status codes in the status message).
# Flash: 2 MB, of which MicroPython leaves about 1.4 MB to littlefs: the journal gets
# 12 x 64 KiB = 768 KiB (~0.8 days at 10 s with the full kit).
#
# Import-time code touches no hardware: the buses are made in Board.__init__ (called by make()),
# so the module compiles with mpy-cross and imports under the Unix port with a fake `machine`.

import time

import machine

from envbox.boards.buses import McuBoard, MuxUART, PinSelect
from envbox.firmware.drivers.nmea import GNSS

NAME = "pico_w"

# -- pins (Pico W pin numbers are GPIO numbers, GPn) ------------------------------------------------
GNSS_UART = 0
GNSS_TX = 0          # -> receiver RX (only used to configure the receiver)
GNSS_RX = 1          # <- receiver TX
GNSS_BAUD = 9600
MUX_UART = 1
MUX_TX = 4           # -> 74HC4051 #1 common (Z); its Y0..Y7 go to each module's RX
MUX_RX = 5           # <- 74HC4051 #2 common (Z); its Y0..Y7 come from each module's TX
MUX_S0 = 10          # select lines, shared by both 4051s; E (enable, active low) tied to GND
MUX_S1 = 11
MUX_S2 = 12
I2C_ID = 1
I2C_SDA = 2
I2C_SCL = 3
I2C_HZ = 100000      # short enclosure wiring; 100 kHz keeps margin with 4.7 k pull-ups
LED = "LED"          # the Pico W's LED hangs off the Wi-Fi chip

# -- what sits where ------------------------------------------------------------------------------
# name: (mux channel, driver module, class, cfg, answer bytes, baud)
MUX_MODULES = {
    "pms5003": (0, "pms5003", "PMS5003", {}, 32, 9600),
    "ze03_o3": (1, "ze03", "ZE03", {"gas": "o3"}, 9, 9600),
    "ze03_no2": (2, "ze03", "ZE03", {"gas": "no2"}, 9, 9600),
    "ze03_so2": (3, "ze03", "ZE03", {"gas": "so2"}, 9, 9600),
    "ze03_co": (4, "ze03", "ZE03", {"gas": "co"}, 9, 9600),
    "ze08": (5, "ze08", "ZE08", {}, 9, 9600),
    "modbus_noise": (6, "modbus_noise", "ModbusNoise", {"baud": 4800}, 7, 4800),
}
I2C_MODULES = {
    "scd4x": (0x62, "scd4x", "SCD4x", {}),
    "sht4x": (0x44, "sht4x", "SHT4x", {}),
}
DEFAULT_KIT = ("pms5003", "ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise",
               "scd4x", "sht4x")

# Modules on the mux answer in turn: the sampler waits for all of them (7 x ~60 ms typical,
# one silent module costs the mux's hold time), and each driver's own timeout counts from its
# request, which may wait in the mux queue.
ANSWER_TIMEOUT_MS = 3000
MUX_HOLD_MS = 600


class Board(McuBoard):
    NAME = NAME
    journal_max_segs = 12

    def __init__(self, config=None):
        cfg = self.setup(config, "pico-001", ANSWER_TIMEOUT_MS)
        kit = cfg.get("modules") or DEFAULT_KIT
        self.gnss_uart = machine.UART(GNSS_UART, baudrate=GNSS_BAUD, tx=machine.Pin(GNSS_TX),
                                      rx=machine.Pin(GNSS_RX), rxbuf=2048)
        self.gnss = GNSS(self.gnss_uart)
        self.plan.append(("gnss", "uart%d" % GNSS_UART, "GP%d/GP%d" % (GNSS_TX, GNSS_RX)))
        self.mux_uart = machine.UART(MUX_UART, baudrate=9600, tx=machine.Pin(MUX_TX),
                                     rx=machine.Pin(MUX_RX), rxbuf=256)
        pins = [machine.Pin(p, machine.Pin.OUT, value=0) for p in (MUX_S0, MUX_S1, MUX_S2)]
        self.mux = MuxUART(self.mux_uart, PinSelect(pins), self._ticks, hold_ms=MUX_HOLD_MS)
        self.i2c = None
        for name in kit:
            if name in MUX_MODULES:
                ch, mod, cls, dcfg, n, baud = MUX_MODULES[name]
                self.fit(name, mod, cls, self.mux.port(ch, n, baud), dcfg,
                         {"timeout_ms": ANSWER_TIMEOUT_MS}, "uart%d-mux" % MUX_UART, "ch%d" % ch)
            elif name in I2C_MODULES:
                if self.i2c is None:
                    self.i2c = machine.I2C(I2C_ID, sda=machine.Pin(I2C_SDA),
                                           scl=machine.Pin(I2C_SCL), freq=I2C_HZ)
                addr, mod, cls, dcfg = I2C_MODULES[name]
                self.fit(name, mod, cls, self.i2c, dcfg, {"address": addr}, "i2c%d" % I2C_ID,
                         "0x%02x" % addr)
            else:
                raise ValueError("module %r is not wired on %s" % (name, NAME))
        from envbox.firmware.linkwifi import WifiLink
        self.link = WifiLink(self, _wlan, cfg.get("wifi_ssid", ""), cfg.get("wifi_password", ""))

    # -- supervision (the reset cause, the RTC: McuBoard, BoardBase) ----------------------------
    def wdt_start(self, timeout_ms):
        # RP2040's watchdog counts at most 8388 ms; longer periods are fed from the io loop
        # (wdt_check), which the app calls every poll
        self._wdt_timeout_ms = timeout_ms
        self._wdt_fed = time.ticks_ms()
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=8000)

    def wdt_feed(self):
        self._wdt_fed = time.ticks_ms()

    def wdt_check(self):
        # the hardware dog is fed here only while the app's own (longer) deadline holds
        if self._wdt is not None and time.ticks_diff(time.ticks_ms(), self._wdt_fed) < self._wdt_timeout_ms:
            self._wdt.feed()


def _wlan():
    """The Wi-Fi station interface (rp2 port, CYW43439)."""
    import network
    return network.WLAN(network.STA_IF)


def make():
    # Wi-Fi comes up in the link's own task (board.link.run()); the app samples meanwhile
    return Board()
