# Board `sim`: the MicroPython Unix port wired to the simulator (simulator/run.py).
#
# The simulator writes sim.json (docs/contracts.md): the virtual clock (t0, warp), the
# pseudo-terminal of each serial module and the I2C bridge socket. This board turns those into
# the same objects a real board has: UARTs with machine.UART's non-blocking read API, a tick
# counter (virtual milliseconds), and the broker address (ENVBOX_BROKER=host:port).
#
# Environment: ENVBOX_SIM_JSON (path of sim.json, required), ENVBOX_BROKER (default
# 127.0.0.1:1883), ENVBOX_DEVICE (overrides sim.json's device id), the broker login and TLS:
# ENVBOX_BOX_CONFIG (a provisioned config.json: login, CA, config key, `insecure`, as on a real
# board), else ENVBOX_MQTT_PASSWORD (login as the device id), ENVBOX_MQTT_TLS_CA (PEM file: TLS,
# the broker verified against it), ENVBOX_CONFIG_KEY (hex: signed remote configs only) and
# ENVBOX_MQTT_INSECURE (default 1: a simulated box without credentials may connect), and the
# flash:
#
#   ENVBOX_STATE_DIR   the directory that holds the box's flash: the image file flash.bin, or with
#                      ENVBOX_FLASH=host the state files themselves (default sim.json's
#                      "state_dir", else ./envbox-state), so a restarted firmware finds its data
#   ENVBOX_FLASH       esp32 (default): a 4 MB chip with the project's partition table, state on
#                      littlefs ("vfs", 512 KiB) and the journal as a record ring on the raw
#                      "journal" partition (1.5 MiB); pico_w: the RP2040's 848 KiB littlefs holding
#                      the firmware's files, the state and the journal's segment files; host: a
#                      host directory (no flash semantics: an option for debugging, not the default)
#   ENVBOX_FLASH_JOURNAL_BYTES   the journal's size (the ring partition, or the segment files'
#                      cap), for tests of a full journal
#   ENVBOX_FLASH_CUT_AT, ENVBOX_FLASH_TORN   cut the power at the N-th flash program or erase of
#                      this run (that write torn to TORN bytes, nothing after it, the process
#                      killed): boards/simflash.py
#   ENVBOX_TICKS_START the tick counter's value at the simulation's t0 (default 2^30 - 60 s: every
#                      run crosses the wrap of time.ticks_ms in its first virtual minute, as a box
#                      does every 12.4 days)
#
# The link: sim.json's "modem" (the simulator's SIMCom model, simulator/modem.py) makes board.link
# the esp32_lte board's CellLink over that modem (boards/simmodem.py), and the broker is reached
# through the modem's data link (its proxy, sim.json modem.proxy, which forwards to the real
# broker only while a call is up); without a modem, the host's network. sim.json's "ntp" (the
# simulator's SNTP server, virtual time) gives the link a time server (ntp_host/ntp_port).
#
# RTC: emulated as on an ESP32, keeping its time across a watchdog or soft reset and a crash
# of the box (the process ending in any way), not across a power cut: set_rtc writes the RTC's
# offset from the virtual time to `rtc` beside the flash image (ENVBOX_STATE_DIR); remove that
# file to model a power cut (the RTC then reads nothing, as a device's reads its epoch).
#
# The watchdog is emulated on the virtual clock: the io loop checks it, and on expiry the board
# writes reset_cause=watchdog into the state directory and exits (status 75), which the next boot
# reports. It cannot catch a wedged interpreter (a real WDT can); it does catch a sampler that
# stopped succeeding.

import json
import os
import socket
import struct
import time

import termios

from envbox.firmware.boardbase import BoardBase
from envbox.firmware.compat import ticks_diff
from envbox.firmware.drivers import registry
from envbox.firmware.drivers.nmea import GNSS

NAME = "sim"
_TICKS_MASK = (1 << 30) - 1
_TICKS_START = (1 << 30) - 60000
_MOUNT = "/data"


class PtyUART:
    """A pseudo-terminal opened like a UART: raw, non-blocking reads (VMIN=0, VTIME=0)."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][6] = 0   # VMIN: return at once with what is there
        a[6][5] = 0   # VTIME: no inter-byte timer
        termios.tcsetattr(fd, termios.TCSANOW, a)

    def any(self):
        # A pty cannot say how many bytes wait without allocating (select.poll returns a list);
        # claim "maybe" and let readinto() answer 0. Drivers stop reading on a 0.
        return 1

    def readinto(self, buf, nbytes=None):
        try:
            return self._f.readinto(buf, len(buf) if nbytes is None else nbytes)
        except OSError:
            return 0

    def write(self, data):
        return self._f.write(data)


class BridgeI2C:
    """machine.I2C's writeto/readfrom_into over the simulator's I2C socket bridge
    (simulator/i2c_bridge.py). A NACK raises OSError, as on a real bus."""

    def __init__(self, path):
        self._s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # the Unix port's connect() takes a raw struct sockaddr: sockaddr_un is the family
        # (native-endian u16) followed by the NUL-terminated path
        self._s.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
        self._hdr = bytearray(4)
        self._resp = bytearray(3)

    def _request(self, op, addr, n):
        h = self._hdr
        h[0] = op
        h[1] = addr
        h[2] = n >> 8
        h[3] = n & 0xFF
        self._s.write(h)

    def _status(self):
        self._read_exact(self._resp, 3)
        st = self._resp[0]
        if st == 1:
            raise OSError(19)   # ENODEV: no device at this address
        if st:
            raise OSError(5)    # EIO: the device refused the transfer

    def _read_exact(self, buf, n):
        got = 0
        mv = memoryview(buf)
        while got < n:
            k = self._s.readinto(mv[got:n])
            if not k:
                raise OSError(5)
            got += k

    def writeto(self, addr, buf, stop=True):
        self._request(0x57, addr, len(buf))
        self._s.write(buf)
        self._status()
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._request(0x52, addr, len(buf))
        self._status()
        self._read_exact(buf, len(buf))


class Board(BoardBase):
    NAME = NAME

    def __init__(self, sim_json=None):
        path = sim_json or os.getenv("ENVBOX_SIM_JSON")
        if not path:
            raise OSError("ENVBOX_SIM_JSON is not set (path of the simulator's sim.json)")
        with open(path) as f:
            cfg = json.load(f)
        self.cfg = cfg
        warp = float(cfg.get("warp", 1.0))
        self.warp = warp
        self._warp_milli = int(warp * 1000 + 0.5)
        self._t0_wall_us = int(float(cfg["t0_wall_s"]) * 1000000)
        self._t0_virtual_ms = int(float(cfg.get("t0_virtual_s", 0)) * 1000)
        # identity, login, TLS and config key as every board reads them (BoardBase.load_net):
        # from a provisioned config.json (ENVBOX_BOX_CONFIG), else from the ENVBOX_MQTT_*
        # variables; ENVBOX_DEVICE and ENVBOX_BROKER override (tests pick free ports)
        bc = os.getenv("ENVBOX_BOX_CONFIG")
        if bc:
            with open(bc) as f:
                net = json.load(f)
        else:
            net = {"insecure": os.getenv("ENVBOX_MQTT_INSECURE", "1") != "0"}
            if os.getenv("ENVBOX_MQTT_PASSWORD"):
                net["mqtt_password"] = os.getenv("ENVBOX_MQTT_PASSWORD")
            ca = os.getenv("ENVBOX_MQTT_TLS_CA")
            if ca:
                with open(ca) as f:
                    net["ca_pem"] = f.read()
            if os.getenv("ENVBOX_CONFIG_KEY"):
                net["config_key"] = os.getenv("ENVBOX_CONFIG_KEY")
        net["device_id"] = (os.getenv("ENVBOX_DEVICE") or net.get("device_id")
                            or cfg.get("device") or "sim-001")
        net["broker"] = (os.getenv("ENVBOX_BROKER") or cfg.get("broker") or net.get("broker")
                         or "127.0.0.1:1883")
        self.load_net(net)
        self.keepalive_s = 30
        # acknowledgements come from a gateway running in wall time; resend after 5 s of none
        self.ack_timeout_ms = int(os.getenv("ENVBOX_ACK_TIMEOUT_MS") or 5000)
        self.ack_timeout_max_ms = 60000
        self.connect_timeout_ms = 5000
        self.backoff_min_ms = 200
        self.backoff_max_ms = 5000
        # wall-time poll interval; virtual waits are scaled so that scheduling latency of the
        # host (not warped) never eats a sensor's answer window
        self.poll_ms = 3
        self.answer_timeout_ms = self._v(max(1000, int(150 * warp)), 5000)
        self.fix_wait_ms = self._v(max(1500, int(150 * warp)), 5000)
        flash_dir = (os.getenv("ENVBOX_STATE_DIR") or cfg.get("state_dir")
                     or os.getcwd() + "/envbox-state")
        self._ticks0 = int(os.getenv("ENVBOX_TICKS_START") or _TICKS_START)
        self._rtc_path = flash_dir + "/rtc"
        self._setup_flash(flash_dir, os.getenv("ENVBOX_FLASH") or "esp32",
                          int(os.getenv("ENVBOX_FLASH_JOURNAL_BYTES") or 0),
                          int(os.getenv("ENVBOX_FLASH_CUT_AT") or 0),
                          int(os.getenv("ENVBOX_FLASH_TORN") or 0))
        self._wdt_ms = 0
        self._wdt_fed = 0
        run_until = cfg.get("run_until_virtual_s")
        self.run_until_s2020 = None if run_until is None else int(run_until) - 1577836800
        serial = cfg.get("serial", {})
        self.gnss = GNSS(PtyUART(serial["gnss"]))
        self.sensors = []
        # The drivers' own timeouts are virtual ms: give them the board's answer window, which
        # allows for the host's (unwarped) scheduling latency.
        extra = {"timeout_ms": self.answer_timeout_ms}
        # the parts the simulator presents, by their registry names (firmware/drivers/registry.py)
        for name in sorted(serial):
            if name == "gnss":
                continue
            if registry.spec(name) is None:
                self.log("no driver for serial module %r: not fitted" % name)
                continue
            self.sensors.append(registry.make(name, PtyUART(serial[name]), extra))
        i2c_devs = cfg.get("i2c") or {}
        if i2c_devs:
            bus = BridgeI2C(cfg["i2c_socket"])
            for addr in sorted(i2c_devs):
                name = i2c_devs[addr]
                if registry.spec(name) is None:
                    self.log("no driver for I2C device %r: not fitted" % name)
                    continue
                e = dict(extra)
                e["address"] = int(addr, 16)
                self.sensors.append(registry.make(name, bus, e))
        self._setup_link(cfg)

    # ---- the link: the simulator's modem and time server, if it has them
    def _setup_link(self, cfg):
        ntp = cfg.get("ntp")
        if ntp:
            # before anything builds self.link: the link reads them when it is made
            host, _, port = ntp.rpartition(":")
            self.ntp_host = host or "127.0.0.1"
            self.ntp_port = int(port)
        m = cfg.get("modem")
        if m:
            from envbox.boards.simmodem import make_link
            self.link = make_link(self, m, {"apn": m.get("apn", "sim.envbox")})
            # the broker is reached through the modem's data link only
            host, _, port = m["proxy"].rpartition(":")
            self.broker_host = host or "127.0.0.1"
            self.broker_port = int(port)

    @staticmethod
    def _v(ms, cap):
        return ms if ms < cap else cap

    # ---- flash
    def _setup_flash(self, flash_dir, kind, journal_bytes, cut_at, torn):
        self.flash_kind = kind
        self.flash = None
        self._ring = None
        if kind == "host":
            self.state_dir = flash_dir
            if journal_bytes:
                self.journal_max_bytes = journal_bytes
            return
        import vfs
        from envbox.boards.simflash import FIRMWARE_FILES_BYTES, LAYOUTS, NorFlash, Partition
        if kind not in LAYOUTS:
            raise OSError("ENVBOX_FLASH=%s: one of esp32, pico_w, host" % kind)
        try:
            os.mkdir(flash_dir)
        except OSError:
            pass
        size, parts = LAYOUTS[kind]
        self.flash = NorFlash(flash_dir + "/flash.bin", size, cut_at=cut_at, torn=torn)
        lfs = None
        for label, start, psize, what in parts:
            if what == "lfs":
                lfs = Partition(self.flash, start, psize, label)
            elif what == "raw":
                if journal_bytes:
                    psize = journal_bytes // 4096 * 4096
                self._ring = Partition(self.flash, start, psize, label)
        fresh = False
        try:
            fs = vfs.VfsLfs2(lfs)
        except OSError:
            # a new (erased) chip: format it, as MicroPython's _boot.py does on first boot
            vfs.VfsLfs2.mkfs(lfs)
            fs = vfs.VfsLfs2(lfs)
            fresh = True
        vfs.mount(fs, _MOUNT)
        self.state_dir = _MOUNT
        if fresh:
            # the firmware's own files take their room on the device's filesystem
            with open(_MOUNT + "/firmware.placeholder", "wb") as f:
                z = bytes(1024)
                for _ in range(FIRMWARE_FILES_BYTES // 1024):
                    f.write(z)
        if journal_bytes and self._ring is None:
            # a small cap (tests of a full journal): segments small enough to drop a few at a time
            self.journal_max_bytes = journal_bytes
            self.journal_seg_bytes = max(1024, min(self.journal_seg_bytes, journal_bytes // 4))

    def open_journal(self):
        if self._ring is not None:
            from envbox.firmware.journal_ring import RingJournal
            return RingJournal(self._ring).open()
        return BoardBase.open_journal(self)

    def ticks_ms(self):
        """Virtual milliseconds since the simulation's t0 plus ENVBOX_TICKS_START, masked like
        time.ticks_ms() (so it wraps 60 virtual s into every run by default)."""
        w = time.time_ns() // 1000 - self._t0_wall_us
        return (self._ticks0 + w * self._warp_milli // 1000000) & _TICKS_MASK

    def log(self, msg):
        # virtual seconds since the simulation's t0 (not the tick counter, which starts near
        # its wrap): the log lines line up with the simulator's clock
        w = time.time_ns() // 1000 - self._t0_wall_us
        print("[%s %d] %s" % (NAME, w * self._warp_milli // 1000000000, msg))

    # ---- emulated RTC (kept across resets and crashes, lost in a power cut: see the top)
    def _virtual_unix_ms(self):
        w = time.time_ns() // 1000 - self._t0_wall_us
        return self._t0_virtual_ms + w * self._warp_milli // 1000000

    def set_rtc(self, t_s2020):
        """The RTC is set to the start of second t_s2020, now."""
        off = (t_s2020 + 1577836800) * 1000 - self._virtual_unix_ms()
        tmp = self._rtc_path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write("%d\n" % off)
            os.rename(tmp, self._rtc_path)
        except OSError as e:
            self.log("rtc: %r" % (e,))

    def rtc_s2020(self):
        try:
            with open(self._rtc_path) as f:
                off = int(f.read().strip())
        except (OSError, ValueError):
            return None         # never set, or a power cut since
        tick = self.ticks_ms()
        ms = self._virtual_unix_ms() + off - 1577836800000
        return ms // 1000, (tick - ms % 1000) & _TICKS_MASK

    # ---- emulated reset cause and watchdog (virtual time)
    def _cause_path(self):
        return self.state_dir + "/reset_cause"

    def flash_stats(self):
        """(bytes programmed, sectors erased, programs + erases) by this run, or None on a host
        directory."""
        f = self.flash
        return None if f is None else (f.programmed, f.erases, f.ops)

    def reset_cause(self):
        try:
            with open(self._cause_path()) as f:
                cause = f.read().strip()
            os.remove(self._cause_path())
            return cause or None
        except OSError:
            return None

    def wdt_start(self, timeout_ms):
        # virtual ms; at a high warp the host's (unwarped) scheduling hiccups would look like
        # minutes of virtual time, so allow at least 2 s of wall time
        self._wdt_ms = self._v(max(timeout_ms, int(2000 * self.warp)), 1 << 28)
        self._wdt_fed = self.ticks_ms()

    def wdt_feed(self):
        self._wdt_fed = self.ticks_ms()

    def wdt_check(self):
        if self._wdt_ms and ticks_diff(self.ticks_ms(), self._wdt_fed) > self._wdt_ms:
            self.log("watchdog: no good sampling cycle for %d ms: reset" % self._wdt_ms)
            with open(self._cause_path(), "w") as f:
                f.write("watchdog")
            import sys
            sys.exit(75)


def make():
    return Board()
