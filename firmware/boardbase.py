# Defaults every board shares; a board file (boards/<name>.py) subclasses BoardBase, builds its
# buses and drivers, and overrides what differs. firmware/app.py reads only these attributes.

import time


class BoardBase:
    NAME = "base"

    # identity and network
    device_id = b"envbox-000"     # bytes; printable ASCII without / + #, at most 32
    broker_host = "127.0.0.1"
    broker_port = 1883
    mqtt_user = None
    mqtt_password = None
    mqtt_ssl = None               # an ssl context/params for TLS, or None
    keepalive_s = 60
    connect_timeout_ms = 10000
    backoff_min_ms = 1000         # reconnect backoff: doubles up to max, with jitter
    backoff_max_ms = 60000
    max_inflight = 20             # QoS 1 messages awaiting PUBACK at once

    # sampling
    period_s = 10
    poll_ms = 20                  # io loop interval (wall ms)
    answer_timeout_ms = 1000      # how long the sampler waits for Q&A modules (board clock ms)
    fix_wait_ms = 1500            # how long past a grid second to wait for that second's fix
    outbox_slots = 16             # RAM queue of unacknowledged samples
    run_until_s2020 = None        # simulated patrols stop here; None on a real box
    drain_timeout_ms = 30000

    # hardware, set by the board
    gnss = None
    sensors = ()

    def ticks_ms(self):
        """Board clock in ms (virtual on the sim board); wraps like time.ticks_ms()."""
        return time.ticks_ms()

    def wall_ms(self):
        """Real elapsed ms, for network timeouts."""
        return time.ticks_ms()

    def log(self, msg):
        print(msg)
