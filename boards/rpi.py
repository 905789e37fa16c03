# Board `rpi`: a Raspberry Pi (any model with Linux, I2C and USB) running the box's drivers
# unchanged under CPython.
#
# The drivers want MicroPython's bus API (docs/contracts.md "Firmware driver interface"); this
# file adapts Linux devices to it:
#   SerialUART  pyserial port -> machine.UART: any() = in_waiting, readinto() never blocks
#               (timeout=0), write()
#   SMBusI2C    smbus2 -> machine.I2C: writeto()/readfrom_into() as single i2c_rdwr() messages
#               (plain I2C transfers; the SMBus "register" calls would add a command byte the
#               Sensirion parts do not expect). A NACK is an OSError from the kernel (ENXIO or
#               EREMOTEIO), which the drivers count like a NACK on a microcontroller.
#
# Every serial module has its own port: the Pi's PL011 UART (/dev/serial0, GPIO14 TXD /
# GPIO15 RXD) for the GNSS receiver, USB-serial adapters (CP2102/CH340/FTDI, 3.3 V logic) for the
# UART modules, and a USB-RS485 adapter with automatic direction control for the Modbus sound
# level meter. Nothing is multiplexed: USB ports are cheap on a Pi. Wiring: docs/boards.md.
#
# Configuration: a dict or a JSON file (ENVBOX_RPI_CONFIG = its path), device paths per module:
#
#   {"device_id": "rpi-001", "broker": "192.168.1.10:1883",
#    "gnss": "/dev/serial0",
#    "serial": {"pms5003": "/dev/serial/by-id/usb-Silicon_Labs_CP2102_0001-if00-port0",
#               "ze03_no2": {"port": "/dev/ttyUSB2", "cfg": {"warmup_ms": 180000}},
#               "modbus_noise": {"port": "/dev/ttyUSB5", "baud": 4800, "cfg": {"address": 1}}},
#    "i2c": {"bus": 1, "devices": {"0x62": "scd4x", "0x44": "sht4x"}}}
#
# plus the login, TLS and config key every board reads in BoardBase.load_net ("mqtt_password",
# "ca_pem", "tls_server_hostname", "config_key", "insecure": docs/provisioning.md).
#
# A port is a path, or {"port", "baud" (default 9600; Modbus: the driver cfg's baud, 4800),
# "cfg" (driver cfg), "rs485" (true: the kernel drives the transceiver's DE from RTS, for an
# on-board UART with a MAX485/SP3485 instead of an auto-direction USB adapter)}.
# Use /dev/serial/by-id/ paths: ttyUSB numbers change with the plug order.
#
# This file is CPython code that MicroPython's compiler must also accept (the tests compile every
# board with mpy-cross): no annotations, no walrus, and pyserial/smbus2 are imported inside the
# functions that need them.

import json
import os
import time

from envbox.firmware.boardbase import BoardBase
from envbox.firmware.compat import ticks_ms as _ticks_ms
from envbox.firmware.drivers.nmea import GNSS

NAME = "rpi"

I2C_M_RD = 0x0001                      # linux/i2c.h: read message flag

# module name (as in sim.json "serial") -> (driver module, class, default cfg)
SERIAL_DRIVERS = {
    "pms5003": ("pms5003", "PMS5003", {}),
    "sds011": ("sds011", "SDS011", {}),
    "mhz19b": ("mhz19b", "MHZ19B", {}),
    "ze03_o3": ("ze03", "ZE03", {"gas": "o3"}),
    "ze03_no2": ("ze03", "ZE03", {"gas": "no2"}),
    "ze03_so2": ("ze03", "ZE03", {"gas": "so2"}),
    "ze03_co": ("ze03", "ZE03", {"gas": "co"}),
    "ze08": ("ze08", "ZE08", {}),
    "modbus_noise": ("modbus_noise", "ModbusNoise", {}),
}
I2C_DRIVERS = {
    "sht4x": ("sht4x", "SHT4x", {}),
    "sht3x": ("sht3x", "SHT3x", {}),
    "scd4x": ("scd4x", "SCD4x", {}),
}
DEFAULT_BAUD = 9600
MODBUS_DEFAULT_BAUD = 4800             # Renke-family default (sensors.md A.7)


class SerialUART:
    """A pyserial port with machine.UART's API. `port` is a path (opened at `baud`, 8N1,
    non-blocking) or an already open serial.Serial-like object."""

    def __init__(self, port, baud=DEFAULT_BAUD, rs485=False):
        if isinstance(port, str):
            import serial
            self._s = serial.Serial(port, baud, timeout=0, write_timeout=1)
            if rs485:
                import serial.rs485
                # RTS high while sending: the transceiver's DE/RE pins follow it
                self._s.rs485_mode = serial.rs485.RS485Settings()
            self.path = port
        else:
            self._s = port
            self.path = getattr(port, "port", None)
        self.baud = baud
        # Bytes that arrived before the driver started belong to nobody (a module's power-on
        # chatter, an overrun buffer): drop them, as the contract asks after opening a port.
        self.flush()

    def flush(self):
        try:
            self._s.reset_input_buffer()
        except Exception:
            pass

    def any(self):
        try:
            return self._s.in_waiting
        except Exception:           # adapter unplugged: look like a silent module
            return 0

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        try:
            data = self._s.read(n)      # timeout=0: what is there, possibly nothing
        except Exception:
            return None
        k = len(data)
        if not k:
            return None
        buf[:k] = data
        return k

    def write(self, data):
        try:
            return self._s.write(bytes(data))
        except Exception:
            return 0

    def close(self):
        self._s.close()


class SMBusI2C:
    """smbus2 with machine.I2C's writeto/readfrom_into. `bus` is a bus number (/dev/i2c-N) or an
    object with smbus2's i2c_rdwr(*msgs)."""

    def __init__(self, bus=1):
        if isinstance(bus, int):
            from smbus2 import SMBus
            bus = SMBus(bus)
        self._bus = bus
        from smbus2 import i2c_msg
        self._msg = i2c_msg

    def writeto(self, addr, buf, stop=True):
        # one write message: START addr+W data... STOP; a NACK raises OSError in i2c_rdwr
        self._bus.i2c_rdwr(self._msg.write(addr, bytes(buf)))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        m = self._msg.read(addr, len(buf))
        self._bus.i2c_rdwr(m)
        buf[:] = bytes(m)

    def scan(self):
        found = []
        for a in range(0x08, 0x78):
            try:
                self.writeto(a, b"")
                found.append(a)
            except OSError:
                pass
        return found

    def close(self):
        try:
            self._bus.close()
        except Exception:
            pass


def load_config(config=None):
    """A dict, a path to a JSON file, or None: ENVBOX_RPI_CONFIG."""
    if config is None:
        config = os.getenv("ENVBOX_RPI_CONFIG")
        if not config:
            raise OSError("ENVBOX_RPI_CONFIG is not set (path of the board's JSON config)")
    if isinstance(config, str):
        with open(config) as f:
            return json.load(f)
    return config


def _port_spec(spec, default_baud):
    if isinstance(spec, str):
        return spec, default_baud, {}, False
    return (spec["port"], spec.get("baud", default_baud), spec.get("cfg") or {},
            bool(spec.get("rs485")))


def _driver(mod, cls, bus, cfg):
    m = __import__("envbox.firmware.drivers." + mod, None, None, (cls,))
    return getattr(m, cls)(bus, cfg)


class Board(BoardBase):
    NAME = NAME

    def __init__(self, config=None, open_uart=None, open_i2c=None, ticks_ms=None):
        """open_uart(path, baud, rs485) and open_i2c(bus) make the buses (tests pass their own);
        ticks_ms replaces the board clock (tests run it on the simulator's virtual clock)."""
        cfg = load_config(config)
        self.cfg = cfg
        open_uart = open_uart or SerialUART
        open_i2c = open_i2c or SMBusI2C
        if ticks_ms is not None:
            self.ticks_ms = ticks_ms
        # identity, broker login and TLS, config key: read as on every board (boardbase)
        self.load_net(cfg, "rpi-001")
        self.uarts = {}
        used = {}
        # one module per port: two modules on one UART would answer on top of each other
        g = cfg.get("gnss")
        gnss_cfg = {}
        if g is not None:
            path, baud, gnss_cfg, rs485 = _port_spec(g, DEFAULT_BAUD)
            used[path] = "gnss"
            self.uarts["gnss"] = open_uart(path, baud, rs485)
            self.gnss = GNSS(self.uarts["gnss"], gnss_cfg)
        self.sensors = []
        self.by_name = {}
        for name in sorted(cfg.get("serial", {})):
            spec = SERIAL_DRIVERS.get(name)
            if spec is None:
                raise ValueError("no driver for serial module %r (known: %s)"
                                 % (name, ", ".join(sorted(SERIAL_DRIVERS))))
            mod, cls, dcfg = spec
            c = dict(dcfg)
            base_baud = DEFAULT_BAUD
            entry = cfg["serial"][name]
            if name == "modbus_noise":
                ecfg = entry.get("cfg", {}) if isinstance(entry, dict) else {}
                base_baud = ecfg.get("baud", MODBUS_DEFAULT_BAUD)
            path, baud, extra, rs485 = _port_spec(entry, base_baud)
            if path in used:
                raise ValueError("%s and %s are both on %s: one module per port"
                                 % (used[path], name, path))
            used[path] = name
            c.update(extra)
            u = open_uart(path, baud, rs485)
            self.uarts[name] = u
            d = _driver(mod, cls, u, c)
            self.sensors.append(d)
            self.by_name[name] = d
        i2c = cfg.get("i2c")
        self.i2c = None
        if i2c and i2c.get("devices"):
            self.i2c = open_i2c(i2c.get("bus", 1))
            for addr in sorted(i2c["devices"]):
                entry = i2c["devices"][addr]
                kind = entry if isinstance(entry, str) else entry["driver"]
                spec = I2C_DRIVERS.get(kind)
                if spec is None:
                    raise ValueError("no driver for I2C device %r" % kind)
                mod, cls, dcfg = spec
                c = dict(dcfg)
                if not isinstance(entry, str):
                    c.update(entry.get("cfg") or {})
                c["address"] = int(addr, 16) if isinstance(addr, str) else addr
                d = _driver(mod, cls, self.i2c, c)
                self.sensors.append(d)
                self.by_name[kind] = d

    def ticks_ms(self):
        return _ticks_ms()

    def wall_ms(self):
        return _ticks_ms()

    def log(self, msg):
        print("[%s %.3f] %s" % (NAME, time.monotonic(), msg))

    def close(self):
        for u in self.uarts.values():
            u.close()
        if self.i2c is not None:
            self.i2c.close()


def make():
    return Board()
