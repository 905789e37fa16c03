"""firmware/link.py's name lookups and network time, under the MicroPython Unix port, off the
sampler's path: DNS over a non-blocking UDP socket against a real dnsmasq, SNTP against the
simulator's time server, and neither may hold the event loop (a ticker task keeps running while
they wait for a server that never answers)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbox import servers
from envbox.simulator.clock import VirtualClock
from envbox.simulator.sntp import SNTPServer
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards
MP = os.path.join(os.path.dirname(sys.executable), "micropython")

SCRIPT = r'''
import asyncio, json, sys, time
from envbox.firmware.link import Link

class Board:
    poll_ms = 5
    def __init__(self, dns, ntp_host, ntp_port):
        self.dns_server = dns
        self.ntp_host = ntp_host
        self.ntp_port = ntp_port
    def ticks_ms(self):
        return time.ticks_ms()
    def wall_ms(self):
        return time.ticks_ms()
    def log(self, m):
        print("#", m)

args = json.loads(sys.argv[1])
b = Board(args["dns"], args.get("ntp_host"), args.get("ntp_port", 123))
link = Link(b)
link.dns_timeout_ms = 300
link.ntp_timeout_ms = 300
ticks = [0]

async def ticker():
    while True:
        ticks[0] += 1
        await asyncio.sleep_ms(10)

async def main():
    t = asyncio.create_task(ticker())
    out = {"up": link.up.is_set()}
    for name in args["names"]:
        t0 = ticks[0]
        try:
            out[name] = await link.resolve(name)
        except OSError as e:
            out[name] = "error: %s" % e
        out[name + "_ticks"] = ticks[0] - t0
    if b.ntp_host:
        t0 = ticks[0]
        out["ntp"] = await link._ntp()
        out["ntp_ticks"] = ticks[0] - t0
        out["time"] = link.time_s2020()
        out["now_tick"] = time.ticks_ms()
    st = {}
    link.status_into(st)
    out["status"] = st
    print(json.dumps(out))

asyncio.run(main())
'''


def run_mp(tmp_path, args):
    p = tmp_path / "linkhost.py"
    p.write_text(SCRIPT)
    env = dict(os.environ, MICROPYPATH=f"{MPSRC}:.frozen")
    r = subprocess.run([MP, str(p), json.dumps(args)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    return json.loads(lines[-1])


@pytest.fixture
def dnsmasq(tmp_path):
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(exe):
        pytest.fail("dnsmasq not found: run `make setup` (Debian dnsmasq-base)")
    port = servers.free_port()
    log = open(tmp_path / "dnsmasq.log", "wb")
    p = subprocess.Popen([exe, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                          "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
                          "--bind-interfaces", "--user=root", "--pid-file=",
                          "--address=/broker.envbox.test/127.0.0.42",
                          "--address=/gone.envbox.test/"],
                         stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    assert p.poll() is None, (tmp_path / "dnsmasq.log").read_text()
    yield port
    p.terminate()
    p.wait(10)


def test_resolve_names_without_blocking_the_loop(tmp_path, dnsmasq):
    out = run_mp(tmp_path, {"dns": f"127.0.0.1:{dnsmasq}",
                            "names": ["broker.envbox.test", "10.1.2.3", "gone.envbox.test"]})
    assert out["up"] is True
    assert out["broker.envbox.test"] == "127.0.0.42"
    assert out["10.1.2.3"] == "10.1.2.3" and out["10.1.2.3_ticks"] == 0     # no lookup
    assert out["gone.envbox.test"].startswith("error: dns gone.envbox.test")
    assert out["status"]["link"]["dns_lookups"] == 2 and out["status"]["link"]["dns_errors"] == 1


def test_a_silent_dns_server_costs_bounded_time_and_never_the_loop(tmp_path):
    silent = servers.free_port()        # nobody answers there
    out = run_mp(tmp_path, {"dns": f"127.0.0.1:{silent}", "names": ["broker.envbox.test"]})
    assert out["broker.envbox.test"].startswith("error: dns")
    # 2 tries x 300 ms while the ticker task ran every 10 ms: the loop was never held
    assert out["broker.envbox.test_ticks"] >= 20


def test_sntp_time_from_the_simulators_server(tmp_path):
    t0 = 1_750_000_000.0
    clock = VirtualClock(t0, 1.0)
    srv = SNTPServer(clock).start()
    try:
        out = run_mp(tmp_path, {"dns": None, "names": [], "ntp_host": "127.0.0.1",
                                "ntp_port": srv.port})
        now_virtual = clock.now()
    finally:
        srv.stop()
    assert out["ntp"] is True and srv.counters["answered"] == 1
    t, tick = out["time"]
    # the second t began at `tick`; at now_tick the time was t + (now_tick - tick) / 1000
    est = t + (out["now_tick"] - tick) / 1000 + 1577836800
    assert abs(est - now_virtual) < 1.0
    assert out["status"]["link"]["ntp_ok"] == 1


def test_sntp_server_out_of_reach_is_counted(tmp_path):
    clock = VirtualClock(1_750_000_000.0, 1.0)
    srv = SNTPServer(clock).start()
    srv.enabled = False
    try:
        out = run_mp(tmp_path, {"dns": None, "names": [], "ntp_host": "127.0.0.1",
                                "ntp_port": srv.port})
    finally:
        srv.stop()
    assert out["ntp"] is False and out["time"] is None
    assert out["status"]["link"]["ntp_errors"] == 1 and out["ntp_ticks"] >= 20
