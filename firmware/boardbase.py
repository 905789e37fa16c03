# Defaults every board shares; a board file (boards/<name>.py) subclasses BoardBase, builds its
# buses and drivers, and overrides what differs. firmware/app.py reads only these attributes.

import time

from .compat import ticks_diff


class BoardBase:
    NAME = "base"

    # identity and network
    device_id = b"envbox-000"     # bytes; printable ASCII without / + #, at most 32
    broker_host = "127.0.0.1"
    broker_port = 1883
    mqtt_user = None
    mqtt_password = None
    mqtt_ssl = None               # an ssl context/params for TLS, or None
    mqtt_server_hostname = None   # the name the broker's certificate must carry (TLS)
    keepalive_s = 60
    connect_timeout_ms = 10000
    backoff_min_ms = 1000         # reconnect backoff: doubles up to max, with jitter
    backoff_max_ms = 60000
    max_inflight = 20             # QoS 1 messages awaiting PUBACK at once (one kept for live)
    # end-to-end acknowledgement (firmware/uplink.py): sent samples a gateway has not
    # acknowledged after this long (wall ms) are sent again; the wait doubles while no
    # acknowledgement comes, up to the max (a gateway away for days costs a resend every 6 h)
    ack_timeout_ms = 300000
    ack_timeout_max_ms = 6 * 3600 * 1000
    max_packet_bytes = 4096       # largest MQTT packet the box reads (bigger ones: read past)
    io_timeout_ms = 10000         # bound on any single socket write (a stalled link raises)
    ntp_host = None               # SNTP server for the link's network time (None: none)

    # sampling
    period_s = 10
    poll_ms = 20                  # io loop interval (wall ms)
    answer_timeout_ms = 1000      # how long the sampler waits for Q&A modules (board clock ms)
    fix_wait_ms = 1500            # how long past a grid second to wait for that second's fix
    # samples taken before any time source, held on flash (state_dir/held.bin) until one comes:
    # at most this many bytes (about 600 full-kit samples, 100 minutes at 10 s)
    hold_max_bytes = 65536

    # flash: the journal and small persisted state (docs/firmware.md, "Journal" and "Flash").
    # A board with a raw "journal" partition returns a RingJournal from open_journal(); the
    # default keeps segment files in state_dir/journal, sized at boot from what the file system
    # has free (os.statvfs) minus journal_reserve_bytes for the box's other files, or
    # journal_max_bytes when that is set. A sample record is about 105 bytes with the full kit,
    # 8,640 a day at 10 s: ~0.9 MB a day. Full: the oldest data is dropped and its unsent samples
    # counted as dropped.
    state_dir = "/data"           # on a device: a littlefs directory
    journal_seg_bytes = 32768
    journal_max_bytes = 0         # 0: size from statvfs at boot
    journal_reserve_bytes = 65536
    batch_bytes = 2048            # catch-up batch buffer (one MQTT payload, ~60 samples)
    batch_max_samples = 60        # samples per catch-up batch (10 min at 10 s)
    wdt_timeout_ms = 60000        # watchdog: at least 3 sampling periods; fed by good cycles
    run_until_s2020 = None        # simulated patrols stop here; None on a real box
    drain_timeout_ms = 30000

    # hardware, set by the board
    gnss = None
    sensors = ()

    # ---- identity, broker login, TLS and the config key: every board reads them here, from its
    # config.json (tools/fleet.py writes it; docs/provisioning.md)
    insecure = False              # config "insecure": true: may connect without TLS or a login
    config_key = None             # bytes: the per-device HMAC key remote configs are signed with

    def load_net(self, cfg, default_id="envbox-000"):
        """Set the identity and the broker's login and TLS from a config.json dict
        (firmware/netconf.py, loaded for this once: the keys are listed there)."""
        from .compat import cold
        cold("netconf").load(self, cfg, default_id)

    def connection_insecure(self):
        """True when the box would connect without TLS or without a login."""
        return self.mqtt_ssl is None or self.mqtt_password is None

    def net_refusal(self):
        """Why the box must not connect (no credentials and no `insecure: true`), or None."""
        if self.insecure or not self.connection_insecure():
            return None
        return "no %s in config.json and not insecure: not connecting" % (
            "ca_pem (TLS)" if self.mqtt_ssl is None else "mqtt_password (login)")

    def open_journal(self):
        """The box's journal store, opened (recovered): segment files under state_dir."""
        from .journal_files import FileJournal
        return FileJournal(self.state_dir + "/journal", seg_bytes=self.journal_seg_bytes,
                           max_bytes=self.journal_max_bytes,
                           reserve_bytes=self.journal_reserve_bytes).open()

    # the network: a link supervisor (firmware/link.py). A board with a network of its own sets
    # self.link (CellLink, WifiLink); by default the host's network, always up.
    _link = None

    @property
    def link(self):
        if self._link is None:
            from .link import Link
            self._link = Link(self)
        return self._link

    @link.setter
    def link(self, value):
        self._link = value

    def ticks_ms(self):
        """Board clock in ms (virtual on the sim board); wraps like time.ticks_ms()."""
        return time.ticks_ms()

    def wall_ms(self):
        """Real elapsed ms, for network timeouts."""
        return time.ticks_ms()

    def log(self, msg):
        print(msg)

    # ---- supervision and time hooks; a real board overrides with machine/network calls
    def reset_cause(self):
        """Why the box last reset: a name (e.g. machine.reset_cause() mapped: "watchdog",
        "power_on", "hard", "deep_sleep", "soft"), or None to let the app infer it from whether
        the previous run shut down cleanly."""
        return None

    def wdt_start(self, timeout_ms):
        """Arm the hardware watchdog (machine.WDT(timeout=...)); called again if the period
        changes (ESP32 re-inits WDT with the new timeout)."""

    def wdt_feed(self):
        pass

    def wdt_check(self):
        """Called by the io loop; only an emulated watchdog needs it."""

    @staticmethod
    def _epoch_to_2020_s():
        # seconds from the port's time epoch (1970, or 2000 on older ESP32 builds) to 2020
        return 1577836800 if time.gmtime(0)[0] == 1970 else 631152000

    def set_rtc(self, t_s2020):
        """Set the board's RTC from a GNSS fix or NTP (machine.RTC where there is one)."""
        try:
            import machine
            tm = time.gmtime(t_s2020 + self._epoch_to_2020_s())
            # RTC.datetime: (year, month, day, weekday 0 = Monday, hours, minutes, seconds,
            # subseconds); gmtime's weekday is also 0 = Monday
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        except Exception:  # noqa: BLE001 - no RTC on this port: the tick-based clock suffices
            pass

    def rtc_s2020(self):
        """(t_s2020, ticks_ms at which that second began) from the board's RTC when it kept a
        time across a reset (machine.RTC: an ESP32's survives a watchdog or soft reset; after a
        power cut it reads its epoch, 2000 or 1970, and is not believed), else None. Read once,
        at boot (firmware/hold.py, loaded for it and unloaded after)."""
        from . import hold
        try:
            return hold.read_rtc(self)
        finally:
            hold.unload()

    def ntp_s2020(self):
        """UTC seconds since 2020 from the network's clock (the link's SNTP or the modem's
        AT+CCLK?), or None. Never blocks: the link learned the time in its own task."""
        t = self.link.time_s2020()
        if t is None:
            return None
        return t[0] + ticks_diff(self.ticks_ms(), t[1]) // 1000

    def rssi_dbm(self):
        """Signal strength of the uplink (WLAN.status('rssi'), modem CSQ), or None."""
        return self.link.rssi()
