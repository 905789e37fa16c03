"""The firmware's footprint under MicroPython with the simulator, a real mosquitto, the real
gateway and InfluxDB.

One patrol (default 60 virtual minutes, full kit) with the broker stopped from minute 10 to 40, so
the same run has live samples and a journal backlog sent in catch-up batches; the gateway
acknowledges what it holds (its coalescing delays scaled by the warp, so the box sees the
product's timing in virtual time). Then, without the patrol: the 32-bit heap (the official
WebAssembly build, tests/mp32/app_heap.py), the same scenario on the 64-bit port from .mpy files
and from a ROMFS image, and the journal's flash wear (benchmarks/mp_flash_wear.py). Prints
key=value:

  cpu_us_per_sample           CPU time (user+system) of the firmware process / samples taken
                              (everything: the 3 ms bus polling, sampling, journal, MQTT)
  peak_heap_bytes             the largest heap allocation seen at a status message, before its
                              collection (live + uncollected garbage); live_heap_bytes_max is the
                              largest live heap after a collection
  bytes_per_sample_live       MQTT PUBLISH packet bytes (fixed header, topic, packet id, payload)
                              of single-sample messages / samples they carried
  bytes_per_sample_catchup    the same for catch-up batches
  bytes_per_sample_naive_json a per-sample JSON object with full key names (wire.naive_json) as a
                              QoS 1 PUBLISH, over every sample of this run: the baseline
  ratio_live_to_json, catchup_samples, live_samples
  reconnect_after_broker_back_virtual_s   the box's backoff: broker back -> CONNACK
  newest_sample_at_broker_after_reconnect_virtual_s
                                          CONNACK -> the newest sample (taken in the period
                                          before it) at the broker: the goal is at most a period
  first_live_after_reconnect_virtual_s    CONNACK -> the first sample taken since at the broker
  first_live_sample_age_at_broker_virtual_s  that sample's age on arrival
  catchup_done_after_reconnect_virtual_s  CONNACK -> the last backlog batch at the broker
  bytes_per_sample_ack        downlink: the gateway's acknowledgements (KIND_ACK, QoS 0, MQTT
                              fixed header and topic included, plus the retained copy the box
                              gets at each reconnect) / samples acknowledged
  peak_heap_bytes_32bit_full, peak_heap_bytes_32bit_pm_gnss
                              the app on the kit's real drivers (fakes subtracted), 32-bit build
  heap_bytes_32bit_link_base, _cell, _wifi
                              what the board's link supervisor adds: the host's network (sim,
                              Raspberry Pi), the LTE modem (driver + supervisor), the Pico W's
                              Wi-Fi
  peak_heap_bytes_64bit_mpy, peak_heap_bytes_romfs
                              the same scenario (PMS5003+GNSS) on the 64-bit Unix port, the
                              firmware from .mpy files / from a ROMFS image (bytecode in flash)
  flash_bytes_written_per_record, flash_erases_per_day (and _littlefs)
                              the journal's wear: the ESP32's record ring / the Pico W's files

Usage: python benchmarks/firmware_footprint.py [--minutes 60] [--heap 200k] [--kit full]
       [--skip-patrol]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from envbox import mpybuild, provision, servers
from envbox.demo import (DEFAULT_HEAP, gateway_config, micropython_exe, publish_packet_bytes,
                         start_firmware, start_gateway, wait_gateway_ready)
from envbox.firmware import wire
from envbox.mpybuild import source_root

ROOT = Path(__file__).resolve().parent.parent
MPSRC = source_root()     # firmware/ and boards/ as envbox.firmware, envbox.boards


def _kv(text):
    out = {}
    for ln in text.splitlines():
        k, sep, v = ln.strip().partition("=")
        if sep and k and " " not in k:
            out[k] = v
    return out


def heap_and_flash(work: Path) -> None:
    """The lines that need no patrol: 32-bit heap, ROMFS heap, flash wear."""
    import shutil
    import subprocess
    node = shutil.which("node")
    runner = ROOT / "tests" / "mp32" / "run.mjs"
    for kit in ("full", "pm-gnss"):
        r = subprocess.run([node, str(runner), "-X", "heapsize=4m",
                            str(ROOT / "tests" / "mp32" / "app_heap.py"), kit],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        k = kit.replace("-", "_")
        v = _kv(r.stdout).get(f"peak_heap_bytes_{k}")
        print(f"peak_heap_bytes_32bit_{k}={v}" if v else f"# 32-bit {kit} failed: {r.stdout[-500:]}")
    # what each board's link supervisor adds on 32 bits
    for which in ("base", "cell", "wifi"):
        r = subprocess.run([node, str(runner), "-X", "heapsize=4m",
                            str(ROOT / "tests" / "mp32" / "link_heap.py"), which],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        v = _kv(r.stdout).get(f"heap_bytes_32bit_link_{which}")
        print(f"heap_bytes_32bit_link_{which}={v}")
    # 64-bit Unix port: .mpy files against a ROMFS image of the same files
    stage = work / "romfs-stage"
    build = work / "romfs-build"
    provision.stage("esp32_lte", {"device_id": "bench", "broker": "h:1", "apn": "a"}, stage,
                    build)
    img = provision.romfs_image(stage, work / "romfs.img")
    mp = micropython_exe()
    env = dict(os.environ, MICROPYPATH=f"{build}:{ROOT / 'tests' / 'firmware'}:.frozen:{MPSRC}")
    r = subprocess.run([mp, "-X", "heapsize=2m", str(ROOT / "tests" / "mp32" / "app_heap.py"),
                        "pm-gnss"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    a = _kv(r.stdout).get("peak_heap_bytes_pm_gnss")
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'tests' / 'firmware'}:.frozen:{MPSRC}")
    r = subprocess.run([mp, "-X", "heapsize=2m", str(ROOT / "tests" / "mp32" / "romfs_heap.py"),
                        str(img), "pm-gnss"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    b = _kv(r.stdout).get("peak_heap_bytes_pm_gnss")
    print(f"peak_heap_bytes_64bit_mpy={a}")
    print(f"peak_heap_bytes_romfs={b}")
    if a and b:
        print(f"ratio_romfs_to_mpy={int(b) / int(a):.2f}")
    print(f"romfs_image_bytes={img.stat().st_size}")
    env = dict(os.environ, MICROPYPATH=f"{MPSRC}:.frozen")
    r = subprocess.run([mp, "-X", "heapsize=8m", str(ROOT / "benchmarks" / "mp_flash_wear.py")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    print(r.stdout.strip() or f"# flash wear failed: {r.stderr[-500:]}")
from envbox.simulator.run import Simulation, add_kit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--warp", type=float, default=60)
    ap.add_argument("--heap", default=DEFAULT_HEAP)
    ap.add_argument("--kit", default="full")
    ap.add_argument("--skip-patrol", action="store_true",
                    help="only the heap and flash lines (no servers, a few minutes)")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="envbox-fw-bench-"))
    if a.skip_patrol:
        heap_and_flash(work)
        return 0
    dev = "sj-001"
    period_s = 10
    import secrets
    gw_pw = secrets.token_hex(8)
    dev_pw = secrets.token_hex(8)
    mon_pw = secrets.token_hex(8)
    broker = servers.Mosquitto(work / "mosquitto",
                               users={servers.GATEWAY_USER: gw_pw, dev: dev_pw,
                                      servers.MONITOR_USER: mon_pw}).start()
    db = servers.InfluxDB1(work / "influxdb").start()
    http_port = servers.free_port()
    # the product's coalescing (160 s, 16 samples, 1 s apart), in the patrol's virtual time
    gw_conf = gateway_config(work / "gateway.toml", broker.port, work / "spool.sqlite3",
                             "influx1", db.url, http_port=http_port,
                             username=servers.GATEWAY_USER, password=gw_pw,
                             ack_max_delay_s=160.0 / a.warp)
    txt = gw_conf.read_text().replace(f"min_interval_s = {min(0.2, 160.0 / a.warp)}",
                                      f"min_interval_s = {1.0 / a.warp:.4f}")
    gw_conf.write_text(txt)
    gw = start_gateway(gw_conf, work / "gateway.log")
    wait_gateway_ready(http_port, gw)
    acks = {"n": 0, "bytes": 0}
    lock = threading.Lock()
    live = {"n": 0, "bytes": 0}
    catch = {"n": 0, "bytes": 0}
    naive = {"n": 0, "bytes": 0}
    status = []
    arrivals = []      # (virtual arrival time, sample time, kind)
    sim = None

    raw = []           # (virtual arrival time, topic, payload): decoded after the run, so the
                       # subscriber's own decoding does not delay later arrival times

    def on_message(cl, u, msg):
        with lock:
            if "/ack/" in msg.topic:
                # the gateway's acknowledgement as the box receives it: QoS 0, no packet id
                acks["n"] += 1
                acks["bytes"] += publish_packet_bytes(len(msg.topic.encode()),
                                                      len(msg.payload), qos=0)
                acks["last"] = (len(msg.topic.encode()), len(msg.payload))
                return
            raw.append((sim.clock.now() if sim else 0, msg.topic, msg.payload))

    def account(now_v, topic, payload):
        class msg:
            pass
        msg.topic, msg.payload = topic, payload
        if True:
            if msg.topic.endswith("/status"):
                if msg.payload.startswith(b"{"):
                    status.append(json.loads(msg.payload))
                return
            ds = wire.decode_many(msg.payload)
            pb = publish_packet_bytes(len(msg.topic.encode()), len(msg.payload))
            acc = catch if msg.payload[0] == wire.KIND_BATCH else live
            acc["n"] += len(ds)
            acc["bytes"] += pb
            for d in ds:
                naive["n"] += 1
                naive["bytes"] += publish_packet_bytes(len(msg.topic.encode()),
                                                       len(wire.naive_json(d).encode()))
                arrivals.append((now_v, d["t_utc_s"], msg.payload[0]))

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=servers.MONITOR_USER,
                    clean_session=False)
    c.username_pw_set(servers.MONITOR_USER, mon_pw)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(
        [(f"envbox/v1/{dev}/data", 1), (f"envbox/v1/{dev}/status", 1),
         (f"envbox/v1/{dev}/ack/+", 0)])
    c.on_message = on_message
    c.reconnect_delay_set(0.01, 0.02)   # back before the box, so arrival times are the box's
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    servers.eventually(c.is_connected, 10, what="bench subscriber")
    sim = Simulation(work / "sim", device=dev, minutes=a.minutes, warp=a.warp, seed=5)
    add_kit(sim, a.kit)
    sim.start()
    mpy = mpybuild.build(work / "mpy")
    fw = start_firmware(sim.sim_json_path, broker.port, work / "firmware.log", a.heap,
                        extra_env={"ENVBOX_STATE_DIR": str(work / "flash"),
                                   "ENVBOX_MQTT_USER": dev, "ENVBOX_MQTT_PASSWORD": dev_pw},
                        mpy_dir=mpy)
    t_down, t_up = a.minutes * 60 / 6, a.minutes * 60 * 4 / 6
    vnow = lambda: sim.clock.now() - sim.start_virtual_s  # noqa: E731
    servers.eventually(lambda: vnow() >= t_down, a.minutes * 60 / a.warp + 30, what="outage")
    broker.stop()
    servers.eventually(lambda: vnow() >= t_up, a.minutes * 60 / a.warp + 30, what="recovery")
    back_v = sim.clock.now()
    broker.start()
    t0 = time.monotonic()
    while fw.poll() is None and time.monotonic() - t0 < a.minutes * 60 / a.warp * 3 + 60:
        time.sleep(0.2)
    ru = os.wait4(fw.pid, 0)[2] if fw.returncode is None else None
    if ru is None:
        # Popen reaped it already: read the children's usage (only this child ran under us)
        import resource
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = r.ru_utime + r.ru_stime
    else:
        cpu_s = ru.ru_utime + ru.ru_stime
    time.sleep(1.0)
    c.loop_stop()
    c.disconnect()
    sim.stop()
    gw.terminate()
    gw.wait(30)
    broker.stop()
    db.stop()
    for item in raw:
        account(*item)
    samples = live["n"] + catch["n"]
    log = (work / "firmware.log").read_text(errors="replace")
    # the box's reconnection after the outage: "[sim <virtual s since t0>] mqtt connected"
    conn_v = [sim.start_virtual_s + int(ln.split("]")[0].split()[1])
              for ln in log.splitlines() if "mqtt connected" in ln]
    conn_v = [v for v in conn_v if v >= back_v - 1]
    link_v = conn_v[0] if conn_v else back_v
    # the newest sample at the reconnection (taken within the period before it), and the first
    # sample taken after it
    newest = sorted(arr for arr, t, k in arrivals
                    if link_v - period_s <= t < link_v and arr >= link_v - 1)
    newest_after = newest[0] - link_v if newest else float("nan")
    after = sorted((arr, t) for arr, t, k in arrivals if t >= link_v and k == wire.KIND_SAMPLE)
    first_live = after[0][0] - link_v if after else float("nan")
    first_live_age = after[0][0] - after[0][1] if after else float("nan")
    if os.getenv("BENCH_DUMP"):
        for arr, t, k in arrivals:
            if link_v - 30 <= arr <= link_v + 40:
                print(f"  arrival {arr - link_v:+.1f} sample_t {t - link_v:+.1f} kind {k}",
                      file=sys.stderr)
    batch_arr = [arr for arr, t, k in arrivals if k == wire.KIND_BATCH]
    catchup_end = max(batch_arr) - link_v if batch_arr else float("nan")
    heap_before = max((s.get("heap_before_gc_bytes", 0) for s in status), default=0)
    heap_live = max((s.get("heap_used_bytes", 0) for s in status), default=0)
    done = [ln for ln in log.splitlines() if "done:" in ln]
    taken = int(done[-1].split("samples=")[1].split()[0]) if done else samples
    print(f"cpu_us_per_sample={cpu_s * 1e6 / max(taken, 1):.0f}")
    print(f"peak_heap_bytes={heap_before}")
    print(f"live_heap_bytes_max={heap_live}")
    print(f"bytes_per_sample_live={live['bytes'] / max(live['n'], 1):.1f}")
    print(f"bytes_per_sample_catchup={catch['bytes'] / max(catch['n'], 1):.1f}")
    print(f"bytes_per_sample_naive_json={naive['bytes'] / max(naive['n'], 1):.1f}")
    print(f"ratio_live_to_json={(live['bytes'] / max(live['n'], 1)) / (naive['bytes'] / max(naive['n'], 1)):.3f}")
    print(f"catchup_samples={catch['n']}")
    print(f"live_samples={live['n']}")
    print(f"reconnect_after_broker_back_virtual_s={link_v - back_v:.1f}")
    print(f"newest_sample_at_broker_after_reconnect_virtual_s={newest_after:.1f}")
    print(f"first_live_after_reconnect_virtual_s={first_live:.1f}")
    print(f"first_live_sample_age_at_broker_virtual_s={first_live_age:.1f}")
    print(f"catchup_done_after_reconnect_virtual_s={catchup_end:.1f}")
    # the retained acknowledgement the broker hands the box at every (re)connect
    connects = sum(1 for ln in log.splitlines() if "mqtt connected" in ln)
    ack_bytes = acks["bytes"]
    if "last" in acks:
        ack_bytes += connects * publish_packet_bytes(*acks["last"], qos=0)
    print(f"bytes_per_sample_ack={ack_bytes / max(taken, 1):.2f}")
    print(f"ack_messages={acks['n']} acked_samples={taken} box_connects={connects}")
    print(f"heap={a.heap} kit={a.kit} minutes={a.minutes:g} warp={a.warp:g} work={work}",
          file=sys.stderr)
    heap_and_flash(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
