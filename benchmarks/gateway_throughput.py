"""Gateway throughput against real servers, with the raw InfluxDB write rate of the same run as
the baseline (shared machines are noisy; compare ratios, not absolute figures).

Prints key=value lines:
  raw_influx_samples_per_s      the same samples as line protocol, POSTed straight to /write in
                                5,000-line batches (no MQTT, no spool): the ceiling
  gateway_live_samples_per_s    publisher (own process, QoS 1) -> mosquitto -> gateway -> InfluxDB,
                                first publish to last sample written
  gateway_commit1_samples_per_s the same with one spool commit (fsync) per message, for scale
  gateway_batched_samples_per_s several samples per MQTT message: n/a, the wire format has one
                                payload kind (one sample per message) so far
  ratio_live=                   gateway_live / raw_influx
  ratio_batched=                gateway_batched / gateway_live (n/a)
  drain_samples_per_s           spool backlog written once InfluxDB comes back
  peak_rss_mb                   the gateway process's peak resident memory (VmHWM)

Usage: python benchmarks/gateway_throughput.py [--samples 20000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from envbox.firmware import wire
from envbox.gateway import config as gwconfig
from envbox.gateway.writer import sample_point
from envbox.servers import InfluxDB1, Mosquitto, eventually, free_port

EPOCH_2020 = wire.EPOCH_2020_UNIX_S


def make_payloads(device: str, n: int, t0: int) -> list[bytes]:
    out = []
    for i in range(n):
        s = wire.Sample(device.encode())
        s.seq, s.t_s2020 = i, t0 - EPOCH_2020 + 10 * i
        s.fix_quality, s.sats, s.hdop_x10 = 1, 9, 9
        s.lat_e7, s.lon_e7, s.alt_dm = 398_900_000 + i, 1_164_600_000 - i, 420
        for ch in range(12):                      # the 12 headline channels, all ok
            s.set(ch, wire.STATUS_OK, (i * 7 + ch * 13) % 900)
        out.append(wire.encode(s))
    return out


def raw_influx(influx: InfluxDB1, payloads: list[bytes]) -> float:
    influx.create_db("raw")
    lines = [sample_point("envbox", wire.decode(p)).to_line_protocol() for p in payloads]
    t = time.perf_counter()
    for k in range(0, len(lines), 5000):
        body = "\n".join(lines[k:k + 5000]).encode()
        req = urllib.request.Request(f"{influx.url}/write?db=raw&precision=s", data=body,
                                     method="POST")
        urllib.request.urlopen(req, timeout=60).read()
    return len(lines) / (time.perf_counter() - t)


def _publish(port: int, topic: str, payloads: list[bytes], ready, go) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.set()
    go.wait()
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            out[k] = float(v)
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_toml(path: Path, cfg: gwconfig.Config) -> Path:
    lines = []
    for sec in gwconfig.SECTIONS:
        lines.append(f"[{sec}]")
        obj = getattr(cfg, sec)
        for f in gwconfig.fields(obj):
            lines.append(f"{f.name} = {json.dumps(getattr(obj, f.name))}")
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    def __init__(self, work: Path, name: str, broker: Mosquitto, influx_url: str, **ingest):
        self.http_port = free_port()
        self.cfg = gwconfig.Config().replace(
            mqtt={"port": broker.port, "client_id": f"bench-{name}", "topic": f"{name}/v1/+/data"},
            spool={"path": str(work / f"{name}.sqlite3")},
            sink={"url": influx_url, "database": name, "retry_initial_s": 0.1, "retry_max_s": 0.5},
            ingest=ingest, http={"listen": f"127.0.0.1:{self.http_port}"})
        conf = write_toml(work / f"{name}.toml", self.cfg)
        self.log = open(work / f"{name}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "envbox.gateway.cli", "--log-level",
                                      "WARNING", "run", "--config", str(conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        eventually(lambda: metrics(self.http_port)["envbox_gateway_mqtt_subscribed"] == 1, 30,
                   what="gateway subscribed")

    def m(self, key: str) -> float:
        return metrics(self.http_port)[key]

    def stop(self) -> float:
        rss = vm_hwm_mb(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        return rss


def live(work, broker, influx, name, payloads, **ingest) -> tuple[float, float]:
    d = Daemon(work, name, broker, influx.url, **ingest)
    ready, go = mp.Event(), mp.Event()
    p = mp.Process(target=_publish, args=(broker.port, f"{name}/v1/bench/data", payloads,
                                          ready, go))
    p.start()
    ready.wait(30)
    t = time.perf_counter()
    go.set()
    n = len(payloads)
    eventually(lambda: d.m("envbox_gateway_written_total") >= n, 600, interval=0.02,
               what=f"{n} written")
    rate = n / (time.perf_counter() - t)
    p.join()
    return rate, d.stop()


def drain(work, broker, influx, payloads) -> float:
    name = "drain"
    influx.stop()                                  # the database is away ...
    d = Daemon(work, name, broker, influx.url)
    ready, go = mp.Event(), mp.Event()
    p = mp.Process(target=_publish, args=(broker.port, f"{name}/v1/bench/data", payloads,
                                          ready, go))
    p.start()
    ready.wait(30)
    go.set()
    n = len(payloads)
    eventually(lambda: d.m("envbox_gateway_spool_depth_samples") >= n, 600, interval=0.05,
               what="backlog spooled")
    p.join()
    influx.start()                                 # ... and comes back
    t = time.perf_counter()
    eventually(lambda: d.m("envbox_gateway_written_total") >= n, 600, interval=0.02,
               what="backlog drained")
    rate = n / (time.perf_counter() - t)
    d.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--commit1-samples", type=int, default=3000)
    args = ap.parse_args()
    t0 = int(time.time()) - 5 * 86400
    payloads = make_payloads("bench", args.samples, t0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        influx = InfluxDB1(work / "influxdb").start()
        try:
            raw = raw_influx(influx, payloads)
            live_rate, rss = live(work, broker, influx, "live", payloads)
            c1_rate, _ = live(work, broker, influx, "commit1", payloads[:args.commit1_samples],
                              commit_max_messages=1)
            drain_rate = drain(work, broker, influx, payloads)
        finally:
            influx.stop()
            broker.stop()
    print(f"samples={args.samples}")
    print(f"raw_influx_samples_per_s={raw:.0f}")
    print(f"gateway_live_samples_per_s={live_rate:.0f}")
    print(f"gateway_commit1_samples_per_s={c1_rate:.0f}")
    print("gateway_batched_samples_per_s=n/a")
    print(f"ratio_live={live_rate / raw:.3f}")
    print("ratio_batched=n/a")
    print(f"drain_samples_per_s={drain_rate:.0f}")
    print(f"peak_rss_mb={rss:.1f}")


if __name__ == "__main__":
    main()
