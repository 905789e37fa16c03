"""`envbox bench-check PORT`: check a freshly flashed box on the bench, over mpremote, and print
one JSON document: the I2C bus scan against the bus plan, the modem (AT, SIM, signal,
registration; Wi-Fi on the Pico W: the network seen and its signal) and one sample from the
fitted modules, decoded. Exit 0 when nothing is missing, 1 otherwise (`problems` says what).

How: the box is put in safe mode first (`/safe_mode`, then a reset), so the app does not run
and arm the watchdog while the check holds the REPL; BENCH_SCRIPT runs on the box with
`mpremote run` (it builds the board from /board.mpy and /config.json as the app does, and uses
the same drivers); the safe-mode flag is removed again and the box reset (unless it was in safe
mode before, or --keep-safe-mode). The box's lines are tagged ENVBOX-BENCH and parsed here; the
sample goes over the wire format (hex) and is decoded by the gateway's decoder.

Tested without a device (tests/test_bench.py): the script runs under the MicroPython Unix port
with a fake `machine` (I2C devices that answer the scan, a modem UART that answers AT commands
like a SIM7600, silent sensor UARTs); the mpremote command lines and the parsing of the output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAG = "ENVBOX-BENCH "

# MicroPython, run on the box. BOOT_S and SAMPLE_S are set by the host.
BENCH_SCRIPT = r'''
import json
import sys
import asyncio
BOOT_S = %(boot_s)d
SAMPLE_S = %(sample_s)d


def out(kind, d):
    d["kind"] = kind
    print("ENVBOX-BENCH " + json.dumps(d))


async def modem(b):
    m = b.link.modem
    m.init_pins()
    d = {"variant": getattr(b.link, "variant", None)}
    ok = await m.at_ok(2)
    if not ok:
        await m.power_on()
        for _ in range(BOOT_S):
            if await m.at_ok(1):
                ok = True
                break
    d["at"] = ok
    if ok:
        await m.cmd(b"ATE0")
        await m.cmd(b"AT+CMEE=1")
        if await m.cmd(b"ATI", 2000) == 0:
            d["ati"] = bytes(m.resp[:m.n]).decode().replace("\r", " ").replace("\n", " ").strip()
        d["sim"] = await m.sim()
        d["iccid"] = await m.iccid()
        d["csq"], d["rssi_dbm"] = await m.csq()
        d["reg"] = await m.registration()
    out("modem", d)


def wifi(b):
    link = b.link
    d = {"ssid": getattr(link, "ssid", None)}
    try:
        w = link.wlan_factory()
        w.active(True)
        seen = {}
        for n in w.scan():
            name = n[0].decode() if isinstance(n[0], bytes) else n[0]
            if name not in seen or n[3] > seen[name]:
                seen[name] = n[3]
        d["networks"] = len(seen)
        d["seen"] = d["ssid"] in seen
        d["rssi_dbm"] = seen.get(d["ssid"])
    except Exception as e:
        d["error"] = repr(e)
    out("wifi", d)


async def sample(b):
    from envbox.firmware import wire
    t0 = b.ticks_ms()
    for d in b.sensors:
        d.start(t0)
    g = b.gnss
    g.start(t0)
    from envbox.firmware.compat import ticks_diff
    while ticks_diff(b.ticks_ms(), t0) < SAMPLE_S * 1000:
        now = b.ticks_ms()
        g.poll(now)
        for d in b.sensors:
            d.poll(now)
        await asyncio.sleep_ms(b.poll_ms)
    start = b.ticks_ms()
    for d in b.sensors:
        d.request(start)
    while ticks_diff(b.ticks_ms(), start) < b.answer_timeout_ms:
        now = b.ticks_ms()
        g.poll(now)
        ready = True
        for d in b.sensors:
            d.poll(now)
            if not d.ready():
                ready = False
        if ready:
            break
        await asyncio.sleep_ms(b.poll_ms)
    s = wire.Sample(b.device_id)
    s.clear_channels()
    now = b.ticks_ms()
    for d in b.sensors:
        d.fill(s, now)
    t = getattr(g, "fix_t_s2020", -1)
    if t > 0:
        g.fill(s, t)
        s.t_s2020 = t
    else:
        s.fix_quality = 0
        s.t_s2020 = 0
    buf = bytearray(wire.MAX_SAMPLE_BYTES)
    n = wire.encode_into(buf, s)
    import binascii
    out("sample", {"hex": binascii.hexlify(buf[:n]).decode(),
                   "gnss": {"sentences_ok": g.sentences_ok, "checksum": g.checksum_errors,
                            "fixes": g.fixes}})


async def main():
    import board
    b = board.make()
    plan = [list(p) for p in b.bus_plan()] if hasattr(b, "bus_plan") else []
    expected = [p[2] for p in plan if p[1].startswith("i2c")]
    if getattr(b, "bridge_a", None) is not None or getattr(b, "bridge_b", None) is not None:
        expected.append("0x48")
    i2c = getattr(b, "i2c", None)
    found = ["0x%%02x" %% a for a in i2c.scan()] if i2c is not None else []
    out("board", {"board": b.NAME, "device": b.device_id.decode(), "plan": plan,
                  "platform": sys.platform, "version": list(sys.implementation.version[:3])})
    out("i2c", {"found": found, "expected": expected})
    name = getattr(b.link, "NAME", None)
    if name == "lte":
        await modem(b)
    elif name == "wifi":
        wifi(b)
    await sample(b)
    out("done", {})


asyncio.run(main())
'''


def bench_script(boot_s: int = 30, sample_s: int = 5) -> str:
    return BENCH_SCRIPT % {"boot_s": boot_s, "sample_s": sample_s}


def parse(out: str) -> dict:
    """The box's ENVBOX-BENCH lines -> one report with `problems`."""
    from .firmware import wire
    rep: dict = {"problems": []}
    for line in out.splitlines():
        if not line.startswith(TAG):
            continue
        try:
            d = json.loads(line[len(TAG):])
        except ValueError:
            rep["problems"].append(f"unreadable line: {line[:80]}")
            continue
        kind = d.pop("kind", None)
        if kind == "board":
            rep.update(d)
        elif kind == "i2c":
            d["missing"] = [a for a in d["expected"] if a not in d["found"]]
            rep["i2c"] = d
            if d["missing"]:
                rep["problems"].append(f"I2C: nothing answers at {', '.join(d['missing'])}")
        elif kind == "modem":
            rep["modem"] = d
            if not d.get("at"):
                rep["problems"].append("modem: no answer to AT (power, PWRKEY, UART pins, baud)")
            elif d.get("sim") != "ready":
                rep["problems"].append(f"modem: SIM {d.get('sim')}")
            elif d.get("reg") not in (1, 5):
                rep["problems"].append(f"modem: not registered (stat {d.get('reg')}, "
                                       f"csq {d.get('csq')})")
        elif kind == "wifi":
            rep["wifi"] = d
            if not d.get("seen"):
                rep["problems"].append(f"Wi-Fi: {d.get('ssid')!r} not seen "
                                       f"({d.get('error') or 'scan'})")
        elif kind == "sample":
            raw = bytes.fromhex(d["hex"])
            s = wire.decode(raw)
            rep["sample"] = s
            rep["sample_bytes"] = len(raw)
            rep["gnss"] = d["gnss"]
            dead = [n for n, c in s["channels"].items() if c.get("status") in ("no_data", "sensor_error",
                                                                               "checksum_error")]
            if dead:
                rep["problems"].append(f"no data from {', '.join(sorted(dead))}")
            if not d["gnss"]["sentences_ok"]:
                rep["problems"].append("GNSS: no NMEA sentence (wiring, baud)")
        elif kind == "done":
            rep["complete"] = True
    if not rep.get("complete"):
        tail = "\n".join(ln for ln in out.splitlines() if not ln.startswith(TAG))[-400:]
        rep["problems"].append("the check did not finish: " + tail.strip())
    return rep


def commands(exe: str, port: str, script: Path, was_safe: bool, keep_safe: bool):
    """The mpremote runs: into safe mode (and reset), the check, out of safe mode (and reset)."""
    enter = [] if was_safe else [exe, "connect", port, "fs", "touch", ":safe_mode", "+", "reset"]
    check = [exe, "connect", port, "run", str(script)]
    leave = [] if (was_safe or keep_safe) else [exe, "connect", port, "fs", "rm", ":safe_mode",
                                                "+", "reset"]
    return enter, check, leave


def main(argv=None, run=subprocess.run, sleep=time.sleep) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="envbox bench-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("port", help="the box's serial port (e.g. /dev/ttyUSB0, /dev/ttyACM0)")
    p.add_argument("--sample-seconds", type=int, default=5,
                   help="how long the modules are polled before the sample (default 5)")
    p.add_argument("--modem-boot-seconds", type=int, default=30)
    p.add_argument("--keep-safe-mode", action="store_true",
                   help="leave the box in safe mode afterwards")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from .provision import mpremote_exe
    exe = mpremote_exe()
    if exe is None:
        print("envbox bench-check: needs mpremote (pip install envbox[bench])", file=sys.stderr)
        return 2
    r = run([exe, "connect", a.port, "exec",
             "import os\nprint('ENVBOX-SAFE', 'safe_mode' in os.listdir('/'))"],
            capture_output=True, text=True, timeout=60)
    if "ENVBOX-SAFE" not in (r.stdout or ""):
        print(f"envbox bench-check: no MicroPython answer on {a.port}: "
              f"{(r.stdout or '')[-200:]}{(r.stderr or '')[-200:]}", file=sys.stderr)
        return 1
    was_safe = "ENVBOX-SAFE True" in r.stdout
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "envbox_bench.py"
        script.write_text(bench_script(a.modem_boot_seconds, a.sample_seconds))
        enter, check, leave = commands(exe, a.port, script, was_safe, a.keep_safe_mode)
        if enter:
            run(enter, timeout=60)
            sleep(3)            # the box resets and comes back on its port in safe mode
        try:
            r = run(check, capture_output=True, text=True,
                    timeout=60 + a.modem_boot_seconds + 4 * a.sample_seconds)
            rep = parse((r.stdout or "") + (r.stderr or ""))
        finally:
            if leave:
                run(leave, timeout=60)
    rep["port"] = a.port
    print(json.dumps(rep, sort_keys=True))
    return 0 if not rep["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
