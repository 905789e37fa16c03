"""An SNTP server (RFC 4330) on a loopback UDP port that tells the virtual time: the network time
a box gets from NTP in the simulated world (sim.json "ntp"). Stratum 2, leap indicator 0.

Counters: requests, answered, bad (not a client request).
"""

import socket
import struct
import threading

NTP_TO_UNIX_S = 2208988800


def ntp_timestamp(t_unix):
    secs = int(t_unix)
    frac = int((t_unix - secs) * (1 << 32)) & 0xFFFFFFFF
    return (secs + NTP_TO_UNIX_S) & 0xFFFFFFFF, frac


def answer(request, t_receive, t_transmit):
    """The server's reply to a client request (48 bytes, mode 3), or None for anything else."""
    if len(request) < 48 or request[0] & 7 != 3:
        return None
    version = (request[0] >> 3) & 7 or 4
    out = bytearray(48)
    out[0] = (0 << 6) | (version << 3) | 4      # LI 0, mode 4 (server)
    out[1] = 2                                  # stratum
    out[2] = request[2]                         # poll
    out[3] = 0xEC                               # precision 2^-20 s
    out[12:16] = b"SIM\0"                       # reference id
    struct.pack_into(">II", out, 16, *ntp_timestamp(t_receive))       # reference
    out[24:32] = request[40:48]                 # originate = the client's transmit
    struct.pack_into(">II", out, 32, *ntp_timestamp(t_receive))
    struct.pack_into(">II", out, 40, *ntp_timestamp(t_transmit))
    return bytes(out)


class SNTPServer:
    def __init__(self, clock, host="127.0.0.1", port=0):
        self.clock = clock
        self._s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._s.bind((host, port))
        self._s.settimeout(0.2)
        self.port = self._s.getsockname()[1]
        self.counters = {"requests": 0, "answered": 0, "bad": 0}
        self.enabled = True          # False: drop every request (a time server out of reach)
        self._stop = threading.Event()

    def start(self):
        threading.Thread(target=self._run, daemon=True, name="sntp").start()
        return self

    def stop(self):
        self._stop.set()
        try:
            self._s.close()
        except OSError:
            pass

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self._s.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            t = self.clock.now()
            self.counters["requests"] += 1
            if not self.enabled:
                continue
            out = answer(data, t, self.clock.now())
            if out is None:
                self.counters["bad"] += 1
                continue
            try:
                self._s.sendto(out, addr)
                self.counters["answered"] += 1
            except OSError:
                pass
