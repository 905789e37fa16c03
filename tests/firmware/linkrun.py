# The LTE board's link code under the MicroPython Unix port against the simulator's modem
# (tests/test_link_modem.py runs it; it needs a running Simulation with a modem, so it is not a
# test_*.py file of its own).
#
#   micropython linkrun.py SIM_JSON RUN_VIRTUAL_S [BROKER_FAILURES_AT_S]
#
# Builds the `sim` board and its CellLink (boards/simmodem.py: the same CellLink and SIMCom
# driver the esp32_lte board runs, on the model's pty and pins), runs the supervisor, and plays a
# small uplink on top: while link.up is set, an MQTT session through the modem's data link (the
# rig's proxy) publishing QoS 1 every 10 virtual seconds; when link.up clears, the session is
# closed (as the uplink does). Prints one JSON line per link state change and a last line
# {"summary": ...}.

import asyncio
import json
import sys
import time

from envbox.boards import sim as simboard
from envbox.boards import simmodem
from envbox.boards.simmodem import make_link
from envbox.firmware.compat import ticks_diff
from envbox.firmware.mqtt import MQTTClient

simmodem.CALLS = []
board = simboard.Board(sys.argv[1])
run_s = int(sys.argv[2])
fail_at_s = int(sys.argv[3]) if len(sys.argv) > 3 else -1
desc = board.cfg["modem"]
link = make_link(board, desc)
# shorter backoffs than a vehicle's, so a run of minutes sees several bring-ups
link.backoff_min_ms = 2000
link.backoff_max_ms = 30000
host, _, port = desc["proxy"].rpartition(":")
port = int(port)

stats = {"sessions": 0, "pubacks": 0, "published": 0, "mqtt_errors": 0,
         "closed_by_link": 0, "connect_errors": 0, "first_error": None}


def vs():
    """Virtual seconds since the simulation's t0 (the board's tick counter starts near its 2^30
    wrap, so the raw ticks are no time axis)."""
    return ticks_diff(board.ticks_ms(), board._ticks0) // 1000


def out(d):
    d["t_s"] = vs()
    print(json.dumps(d))


async def uplink():
    pid = 0
    while True:
        await link.up.wait()
        c = MQTTClient(b"linkrun-" + board.device_id, await link.resolve(host), port,
                       keepalive_s=600, clean_session=True)
        acked = []
        c.on_puback = acked.append
        reader = None
        try:
            await c.connect(5000)
            link.broker_ok()
            stats["sessions"] += 1
            reader = asyncio.create_task(c.read_loop(board.wall_ms))
            last = -1
            while link.up.is_set():
                if reader.done():
                    raise OSError("reader ended")
                now_s = vs()
                if now_s // 10 != last:
                    last = now_s // 10
                    pid = pid % 60000 + 1
                    await asyncio.wait_for_ms(c.publish(b"envbox/v1/linkrun/data", b"x%d" % pid,
                                                        pid, qos=1), 5000)
                    stats["published"] += 1
                stats["pubacks"] += len(acked)
                del acked[:]
                await asyncio.sleep_ms(10)
            stats["closed_by_link"] += 1
        except Exception as e:  # noqa: BLE001
            if stats["sessions"] == 0 or not link.up.is_set():
                stats["connect_errors"] += 1
            else:
                stats["mqtt_errors"] += 1
            if stats["first_error"] is None:
                stats["first_error"] = repr(e)
            link.broker_failed()
        finally:
            stats["pubacks"] += len(acked)
            if reader:
                reader.cancel()
            c.close()
        await asyncio.sleep_ms(50)


async def main():
    sup = asyncio.create_task(link.run())
    up = asyncio.create_task(uplink())
    last = None
    failed = False
    while vs() < run_s:
        if fail_at_s >= 0 and not failed and vs() >= fail_at_s:
            failed = True
            for _ in range(link.broker_failures_to_recycle):
                link.broker_failed()
        st = link._status()
        key = (st["state"], st["last_error"])
        if key != last:
            last = key
            t = link.time_s2020()
            st["time"] = list(t) if t else None
            out(st)
        await asyncio.sleep_ms(5)
    sup.cancel()
    up.cancel()
    st = link._status()
    t = link.time_s2020()
    st["time"] = list(t) if t else None
    st["now_tick"] = board.ticks_ms()
    st["time_age_ms"] = ticks_diff(st["now_tick"], t[1]) if t else None
    st["uplink"] = stats
    st["calls"] = simmodem.CALLS
    out({"summary": st})


t0 = time.ticks_ms()
asyncio.run(main())
