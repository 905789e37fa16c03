# The Wi-Fi link of the Pico W (network.WLAN station on the CYW43439), supervised
# (docs/firmware.md, "Link").
#
# connect    WLAN.connect(ssid, key), then WLAN.status() polled until STAT_GOT_IP (3) or a
#            failure code: STAT_WRONG_PASSWORD (-3), STAT_NO_AP_FOUND (-2), STAT_CONNECT_FAIL
#            (-1), or the time-out; the code goes into last_error
# up         watched every second: isconnected() and status(); too many broker failures in a
#            row disconnect and join again
# backoff    doubling with jitter between tries, as the LTE link

import os

from .link import Link, STATE_DOWN

STAT_NAMES = {0: "idle", 1: "connecting", 2: "no_ip", 3: "got_ip", -1: "connect_fail",
              -2: "no_ap_found", -3: "wrong_password"}


class WifiLink(Link):
    """`wlan_factory()`: network.WLAN(network.STA_IF) on a device."""

    NAME = "wifi"
    ALWAYS_UP = False
    connect_timeout_ms = 20000
    watch_ms = 1000
    backoff_min_ms = 2000
    backoff_max_ms = 60000

    def __init__(self, board, wlan_factory, ssid, key, min_wall_ms=0):
        Link.__init__(self, board, min_wall_ms)
        self.wlan_factory = wlan_factory
        self.ssid = ssid
        self.key = key
        self.wlan = None
        self.status_code = None
        self.rssi_dbm = None
        self.failures = 0

    async def run(self):
        while True:
            why = None
            try:
                why = await self._join()
            except Exception as e:  # noqa: BLE001 - a driver error must not end the link
                why = "wifi: %r" % (e,)
            if why is None:
                self.failures = 0
                self._set_up()
                self._log("up (%s, rssi %s dBm)" % (self.ssid, self.rssi_dbm))
                if self.ntp_host and self._time_due():
                    await self._ntp()
                try:
                    why = await self._watch()
                except Exception as e:  # noqa: BLE001
                    why = "watch: %r" % (e,)
                self._set_down(STATE_DOWN, why)
                try:
                    self.wlan.disconnect()
                except Exception:  # noqa: BLE001
                    pass
            else:
                self.failures += 1
                self._set_down(STATE_DOWN, why)
            n = self.failures if self.failures < 8 else 8
            ms = self.backoff_min_ms << (n - 1 if n > 0 else 0)
            if ms > self.backoff_max_ms:
                ms = self.backoff_max_ms
            self.state = "backoff"
            await self.clock.sleep(ms // 2 + os.urandom(1)[0] * ms // 512)

    async def _join(self):
        w = self.wlan
        if w is None:
            w = self.wlan = self.wlan_factory()
            w.active(True)
            try:
                w.config(pm=0xA11140)   # no power saving: keeps MQTT latency low (CYW43)
            except Exception:  # noqa: BLE001 - not every build has pm
                pass
        self.state = "joining"
        if w.isconnected():
            self.status_code = 3
            self._rssi()
            return None
        w.connect(self.ssid, self.key)
        d = self.clock.deadline(self.connect_timeout_ms)
        while True:
            st = w.status()
            self.status_code = st
            if st == 3:
                self._rssi()
                return None
            if st < 0:
                return "wifi: %s (status %d)" % (STAT_NAMES.get(st, "error"), st)
            if d.expired():
                return "wifi: %s after %d s (status %d)" % (STAT_NAMES.get(st, "?"),
                                                            d.elapsed_ms() // 1000, st)
            await self.clock.sleep(200)

    def _rssi(self):
        try:
            self.rssi_dbm = self.wlan.status("rssi")
        except Exception:  # noqa: BLE001
            self.rssi_dbm = None

    async def _watch(self):
        w = self.wlan
        n = 0
        while True:
            await self.clock.sleep(self.watch_ms)
            if not w.isconnected():
                st = w.status()
                self.status_code = st
                return "wifi lost (status %d %s)" % (st, STAT_NAMES.get(st, "?"))
            n += 1
            if n % 30 == 0:
                self._rssi()
            if self._recycle_due():
                return "broker unreachable %d times: re-joining" % (
                    self.broker_failures_to_recycle)

    def dns_server(self):
        try:
            return self.wlan.ifconfig()[3] if self.wlan is not None else None
        except Exception:  # noqa: BLE001
            return None

    def _status(self):
        s = Link._status(self)
        s["ssid"] = self.ssid
        s["wifi_status"] = self.status_code
        s["rssi_dbm"] = self.rssi_dbm
        return s

    def rssi(self):
        return self.rssi_dbm
