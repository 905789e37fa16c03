"""firmware/linkwifi.py (the Pico W's Wi-Fi supervisor) under the MicroPython Unix port, with a
WLAN stand-in driven through the station status codes of the CYW43 driver; every call the link
makes on it is checked against the rp2 (Pico W) stub of network.WLAN."""

import json
import os
import subprocess
import sys
from pathlib import Path

from stubsig import check_call
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
MP = os.path.join(os.path.dirname(sys.executable), "micropython")

SCRIPT = r'''
import asyncio, json, time
from envbox.firmware.linkwifi import WifiLink

CALLS = []
T = [0]

def rec(name, args, kw):
    c = [name, len(args), sorted(kw)]
    if c not in CALLS:
        CALLS.append(c)

class WLAN:
    """network.WLAN(STA_IF): `plan` lists (status code, ms it lasts) per connect()."""
    def __init__(self, plan):
        rec("WLAN", (0,), {})
        self.plan = plan
        self.st = 0
        self.until = 0
        self.connects = 0
        self.drop_at = None
    def active(self, *a):
        rec("WLAN.active", a, {})
        return True
    def config(self, *a, **kw):
        rec("WLAN.config", a, kw)
    def connect(self, *a, **kw):
        rec("WLAN.connect", a, kw)
        self.seq = list(self.plan[min(self.connects, len(self.plan) - 1)])
        self.connects += 1
        self.st = 1
        self.t0 = T[0]
    def disconnect(self):
        rec("WLAN.disconnect", (), {})
        self.st = 0
    def status(self, *a):
        rec("WLAN.status", a, {})
        if a:
            return -61
        if self.st == 1:
            el = T[0] - self.t0
            for code, ms in self.seq:
                if el < ms:
                    return 1
                el -= ms
                self.st = code
        if self.drop_at is not None and T[0] >= self.drop_at and self.st == 3:
            self.st = -1
            self.drop_at = None
        return self.st
    def isconnected(self):
        rec("WLAN.isconnected", (), {})
        return self.status() == 3
    def ifconfig(self, *a):
        rec("WLAN.ifconfig", a, {})
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")

class Board:
    poll_ms = 1
    warp = 100000.0          # the board clock (T) runs as fast as the loop turns
    def ticks_ms(self):
        return T[0]
    def wall_ms(self):
        return time.ticks_ms()
    def log(self, m):
        print("#", m)

# 1st join: wrong password after 2 s; 2nd: no AP; 3rd: got an address after 3 s
w = WLAN([[(-3, 2000)], [(-2, 5000)], [(3, 3000)]])
link = WifiLink(Board(), lambda: w, "patrol", "s3cret")
link.backoff_min_ms = 1000
link.backoff_max_ms = 4000
events = []

async def clock():
    while True:
        T[0] += 100          # 100 virtual ms per loop turn
        await asyncio.sleep_ms(0)

async def main():
    asyncio.create_task(clock())
    asyncio.create_task(link.run())
    last = None
    dropped = False
    # until the third time up (or a bound far past it): the end does not depend on how fast the
    # host turns the loop
    while T[0] < 5000000 and not (link.ups >= 3 and link.state == "up"):
        if T[0] >= 60000 and not dropped and link.ups == 1:
            dropped = True
            w.drop_at = T[0]
        if T[0] >= 90000 and link.ups == 2 and link.recycles == 0:
            for _ in range(link.broker_failures_to_recycle):
                link.broker_failed()
        k = (link.state, link.last_error)
        if k != last:
            last = k
            events.append([T[0], link.state, link.last_error])
        await asyncio.sleep_ms(0)
    st = {}
    link.status_into(st)
    print(json.dumps({"events": events, "status": st["link"], "calls": CALLS,
                      "connects": w.connects, "rssi": link.rssi()}))

asyncio.run(main())
'''


def test_wifi_link_reports_status_codes_rejoins_and_recycles(tmp_path):
    p = tmp_path / "wifi.py"
    p.write_text(SCRIPT)
    r = subprocess.run([MP, str(p)], cwd=ROOT, env=dict(os.environ, MICROPYPATH=f"{MPSRC}:.frozen"),
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    out = json.loads(lines[-1])
    errors = []
    for _, _, e in out["events"]:
        if e and (not errors or errors[-1] != e):
            errors.append(e)
    assert errors[0] == "wifi: wrong_password (status -3)"
    assert errors[1] == "wifi: no_ap_found (status -2)"
    assert errors[2].startswith("wifi lost (status -1")
    assert errors[3].startswith("broker unreachable")
    st = out["status"]
    assert st["state"] == "up" and st["ups"] == 3 and st["drops"] == 2 and st["recycles"] == 1
    assert st["ssid"] == "patrol" and st["rssi_dbm"] == -61 and st["wifi_status"] == 3
    for name, nargs, kws in out["calls"]:
        check_call("rp2", "network", name, [0] * nargs, {k: 0 for k in kws})
    assert {c[0] for c in out["calls"]} >= {"WLAN", "WLAN.connect", "WLAN.status",
                                           "WLAN.isconnected", "WLAN.disconnect"}
