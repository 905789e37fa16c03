"""Gateway throughput against real servers, with the raw InfluxDB write rate of the same run as
the baseline (shared machines are noisy; compare ratios, not absolute figures).

Prints key=value lines:
  raw_influx_samples_per_s       the batched run's samples as line protocol (built beforehand),
                                 POSTed straight to /write of a fresh database in 5,000-line
                                 batches (no MQTT, no spool): the ceiling
  gateway_live_samples_per_s     one sample per message from many boxes (--devices), published
                                 by --publishers processes (QoS 1) -> mosquitto -> gateway
                                 (durability on: synchronous=FULL, ack after commit) -> InfluxDB,
                                 first publish to last sample written
  gateway_batched_samples_per_s  the same for catch-up traffic: KIND_BATCH messages of
                                 --batch-samples (the firmware's batch_max_samples, 60)
  ratio_batched                  gateway_batched / raw_influx
  ratio_live                     gateway_live / raw_influx
  drain_samples_per_s            a backlog of --drain-samples already in the spool, written once
                                 InfluxDB is there (gateway start to last sample written)
  peak_rss_mb                    the largest peak resident memory (VmHWM) of the gateway
                                 processes of the three runs
  acks_sent                      acknowledgements the gateway published to the boxes per run
                                 ([ack] enabled, the default; --no-acks turns them off)
  gateway_batched_nocheck_samples_per_s, ratio_conflict_check
                                 the batched run again with the spool's conflict check off
                                 ([spool] conflict_window_s = 0), and batched / that
  catchup_samples_per_s, catchup_peak_rss_mb_ingest, catchup_peak_rss_mb_both,
  catchup_held_messages_peak     --catchup-samples (1,000,000) single-sample messages queued
                                 by the broker while the gateway was away, then caught up:
                                 rate from its start to the last written, peak RSS of the ingest
                                 process and of both, most messages held received-but-uncommitted
  seq_step2_commit_ms_first/last mean commit time of a box sending batches with seq step 2,
                                 first and last 10 of 100 commits of 600 samples (flat = bounded
                                 gap accounting)

Everything shares this machine's cores: broker, InfluxDB, publishers and gateway.

Usage: python benchmarks/gateway_throughput.py [--live-samples 40000] [--drain-samples 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from envbox.firmware import wire
from envbox.gateway import config as gwconfig
from envbox.gateway.spool import Accepted, Spool
from envbox.gateway.lines import sample_point
from envbox.servers import InfluxDB1, Mosquitto, eventually, free_port

EPOCH_2020 = wire.EPOCH_2020_UNIX_S
ROWS_PER_WRITE: dict[str, float] = {}   # run -> samples per InfluxDB write request
CPU_US: dict[str, float] = {}
PROTOCOL = gwconfig.MqttConfig.protocol   # the gateway's MQTT version; --protocol
WRITER_PROCESS = gwconfig.SinkConfig.writer_process   # --writer-process / --writer-thread
ACKS = gwconfig.AckConfig.enabled                     # --acks / --no-acks
ACKS_SENT: dict[str, float] = {}
SPOOLED_PER_S: dict[str, float] = {}
PUBLISHED_PER_S: dict[str, float] = {}  # run -> samples/s the publishers got PUBACKs for
COMMITS: dict[str, tuple[float, float]] = {}  # run -> (commit groups, mean ms per commit)


def make_sample(device: bytes, seq: int, t_unix: int, rnd: random.Random) -> wire.Sample:
    s = wire.Sample(device)
    s.seq, s.t_s2020 = seq, t_unix - EPOCH_2020
    s.flags = wire.FLAG_CLOCK_FROM_GPS
    s.fix_quality, s.sats, s.hdop_x10 = 1, 9, 9
    s.lat_e7, s.lon_e7, s.alt_dm = 398_900_000 + 40 * seq, 1_164_600_000 - 25 * seq, 420
    s.speed_kmh_x10, s.course_x10 = 300 + seq % 50, 1800
    for ch in range(12):                      # the 12 headline channels, all ok
        s.set(ch, wire.STATUS_OK, rnd.randrange(900))
    return s


def device_name(i: int) -> bytes:
    return b"box-%05d" % i


def live_payloads(devices: int, n: int, t0: int) -> list[tuple[str, bytes]]:
    """n single-sample messages round-robin over `devices` boxes (the fleet's live traffic)."""
    rnd = random.Random(1)
    out = []
    for i in range(n):
        dev, k = device_name(i % devices), i // devices
        out.append((dev.decode(), wire.encode(make_sample(dev, k, t0 + 10 * k, rnd))))
    return out


def batched_payloads(devices: int, n: int, per_batch: int, t0: int) -> list[tuple[str, bytes]]:
    """n samples as KIND_BATCH messages of per_batch samples, the boxes' catch-up after an
    outage, interleaved over `devices` boxes."""
    rnd = random.Random(2)
    per_dev = -(-n // devices)
    buf = bytearray(2048)                     # the firmware's batch_bytes
    queues = []
    for d in range(devices):
        dev = device_name(d)
        msgs = []
        k = 0
        while k < per_dev and d * per_dev + k < n:
            e = wire.BatchEncoder(buf, 10)
            first = make_sample(dev, k, t0 + 10 * k, rnd)
            e.begin(first)
            e.add(first)
            k += 1
            while e.count < per_batch and k < per_dev and d * per_dev + k < n:
                if not e.add(make_sample(dev, k, t0 + 10 * k, rnd)):
                    break
                k += 1
            msgs.append((dev.decode(), bytes(buf[:e.finish()])))
        queues.append(msgs)
    out = []
    for i in range(max(len(q) for q in queues)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def raw_influx(influx: InfluxDB1, payloads: list[tuple[str, bytes]]) -> float:
    influx.create_db("raw")
    lines = [sample_point("envbox", wire.decode(p)).to_line_protocol() for _d, p in payloads]
    t = time.perf_counter()
    for k in range(0, len(lines), 5000):
        body = "\n".join(lines[k:k + 5000]).encode()
        req = urllib.request.Request(f"{influx.url}/write?db=raw&precision=s", data=body,
                                     method="POST")
        urllib.request.urlopen(req, timeout=60).read()
    return len(lines) / (time.perf_counter() - t)


def _mqtt_packet(first_byte: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 control packet: fixed header, remaining length (varint), body."""
    n, length = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        length.append(b | (0x80 if n else 0))
        if not n:
            return bytes([first_byte]) + bytes(length) + body


def _recv_exact(sock, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        out += chunk
    return out


def _publish(port: int, prefix: str, msgs: list[tuple[str, bytes]], ready, go,
             window: int = 1000) -> None:
    """A fleet's worth of boxes on one MQTT 3.1.1 connection (the boxes speak 3.1.1): PUBLISH
    QoS 1 packets encoded before the start, sent with up to `window` unacknowledged, PUBACKs
    counted. Written on a raw socket because paho's publish path cost about as much CPU per
    message as the gateway's whole ingest, on the same two cores: the publishers would have
    measured themselves."""
    cid = f"bench-pub-{os.getpid()}".encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c"
                              + struct.pack(">H", len(cid)) + cid))
    connack = _recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNACK {connack.hex()}")
    pkts = []
    for k, (dev, payload) in enumerate(msgs):
        topic = f"{prefix}/v1/{dev}/data".encode()
        pkts.append(_mqtt_packet(0x32, struct.pack(">H", len(topic)) + topic
                                 + struct.pack(">H", k % 65535 + 1) + payload))
    ready.set()
    go.wait()
    sent = acked = 0
    buf = b""
    while acked < len(pkts):
        if sent < len(pkts) and sent - acked < window:
            upto = min(len(pkts), acked + window)
            sock.sendall(b"".join(pkts[sent:upto]))
            sent = upto
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("broker closed the connection")
        buf += data
        n = len(buf) // 4                       # PUBACK = 40 02 <packet id>
        for j in range(n):
            pid = (acked + j) % 65535 + 1        # the broker acknowledges in order
            if buf[4 * j:4 * j + 4] != b"\x40\x02" + struct.pack(">H", pid):
                raise ConnectionError(f"expected PUBACK {pid}, got {buf[4 * j:4 * j + 4].hex()}")
        acked += n
        buf = buf[4 * n:]
    sock.sendall(b"\xe0\x00")                  # DISCONNECT
    sock.close()


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            out[k] = float(v)
    return out


def gateway_pids(pid: int) -> list[int]:
    """The gateway process and its children (the writer process, [sink] writer_process)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:          # a thread that just ended (an HTTP handler)
            pass
    return out


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of the gateway: the sum of its processes' peaks (an upper bound;
    pages shared after the fork count once per process)."""
    total = 0.0
    for p in gateway_pids(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the gateway's processes have used so far."""
    total = 0.0
    for p in gateway_pids(pid):
        f = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def write_toml(path: Path, cfg: gwconfig.Config) -> Path:
    lines = []
    for sec in gwconfig.SECTIONS:
        lines.append(f"[{sec}]")
        obj = getattr(cfg, sec)
        for f in gwconfig.fields(obj):
            lines.append(f"{f.name} = {json.dumps(getattr(obj, f.name))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_config(work: Path, name: str, broker: Mosquitto, influx_url: str,
                   http_port: int, spool: dict | None = None) -> gwconfig.Config:
    # Defaults otherwise: synchronous=FULL, ack after commit, 5,000-row writes, the conflict
    # check and max_past_s on.
    return gwconfig.Config().replace(
        mqtt={"port": broker.port, "client_id": f"bench-{name}", "topic": f"{name}/v1/+/data",
              "protocol": PROTOCOL},
        spool={"path": str(work / f"{name}.sqlite3"), **(spool or {})},
        sink={"url": influx_url, "database": name, "retry_initial_s": 0.1, "retry_max_s": 0.5,
              "writer_process": WRITER_PROCESS},
        ack={"enabled": ACKS},
        http={"listen": f"127.0.0.1:{http_port}"})


class Daemon:
    """`envbox-gateway run` in its own process, as deployed."""

    def __init__(self, work: Path, name: str, broker: Mosquitto, influx_url: str,
                 wait_subscribed: bool = True, spool: dict | None = None):
        self.http_port = free_port()
        self.cfg = gateway_config(work, name, broker, influx_url, self.http_port, spool)
        conf = write_toml(work / f"{name}.toml", self.cfg)
        self.log = open(work / f"{name}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "envbox.gateway.cli", "--log-level",
                                      "WARNING", "run", "--config", str(conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        key = "envbox_gateway_mqtt_subscribed" if wait_subscribed else "envbox_gateway_spool_depth_samples"
        eventually(lambda: key in metrics(self.http_port), 60, what="gateway up")
        if wait_subscribed:
            eventually(lambda: self.m(key) == 1, 30, what="gateway subscribed")

    def m(self, key: str) -> float:
        return metrics(self.http_port)[key]

    def stop(self) -> float:
        rss = vm_hwm_mb(self.proc.pid)
        self.cpu_s = cpu_s(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        return rss


def published_run(work, broker, influx, name, msgs, n_samples, publishers,
                  spool: dict | None = None) -> tuple[float, float]:
    """Publish msgs from `publishers` processes; samples/s from the first publish to the last
    sample written, and the gateway's peak RSS."""
    d = Daemon(work, name, broker, influx.url, spool=spool)
    ready = [mp.Event() for _ in range(publishers)]
    go = mp.Event()
    procs = [mp.Process(target=_publish, args=(broker.port, name, msgs[k::publishers],
                                               ready[k], go)) for k in range(publishers)]
    for p in procs:
        p.start()
    for r in ready:
        r.wait(60)
    t = time.perf_counter()
    go.set()
    n_msgs = len(msgs)
    spooled_at = published_at = None
    while True:
        m = metrics(d.http_port)
        if spooled_at is None and m["envbox_gateway_acked_total"] >= n_msgs:
            spooled_at = time.perf_counter()
        if published_at is None and not any(p.is_alive() for p in procs):
            published_at = time.perf_counter()
        if m["envbox_gateway_written_total"] >= n_samples:
            break
        if time.perf_counter() - t > 900:
            raise TimeoutError(f"{n_samples} written")
        time.sleep(0.1)
    rate = n_samples / (time.perf_counter() - t)
    SPOOLED_PER_S[name] = n_samples / ((spooled_at or time.perf_counter()) - t)
    for p in procs:
        p.join()
    PUBLISHED_PER_S[name] = n_samples / ((published_at or time.perf_counter()) - t)
    for p in procs:
        p.join()
    ROWS_PER_WRITE[name] = n_samples / d.m("envbox_gateway_write_requests_total")
    ACKS_SENT[name] = d.m("envbox_gateway_acks_sent_total")
    groups = d.m("envbox_gateway_commits_total")
    COMMITS[name] = (groups, d.m("envbox_gateway_commit_us_total") / 1000 / max(1.0, groups))
    rss = d.stop()
    CPU_US[name] = d.cpu_s / n_samples * 1e6
    return rate, rss


def publish_all(port: int, prefix: str, msgs, publishers: int) -> float:
    """Publish msgs from `publishers` raw-socket processes; seconds it took."""
    ready = [mp.Event() for _ in range(publishers)]
    go = mp.Event()
    procs = [mp.Process(target=_publish, args=(port, prefix, msgs[k::publishers], ready[k], go))
             for k in range(publishers)]
    for p in procs:
        p.start()
    for r in ready:
        r.wait(120)
    t = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    return time.perf_counter() - t


def ingest_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def catchup(work, broker, influx, n, devices, t0, publishers) -> dict:
    """A gateway back from a break: n single-sample messages queued by the broker for its
    session, then the gateway started; samples/s from its start to the last one written, peak
    RSS of the ingest process (the one holding what was received and not yet committed) and of
    both, and the most messages it held received-but-uncommitted."""
    name = "catchup"
    d = Daemon(work, name, broker, influx.url)       # registers the persistent session
    d.stop()
    msgs = live_payloads(devices, n, t0)
    pub_s = publish_all(broker.port, name, msgs, publishers)
    del msgs
    t = time.perf_counter()
    d = Daemon(work, name, broker, influx.url)
    rss_peak = 0.0
    while d.m("envbox_gateway_written_total") < n:
        rss_peak = max(rss_peak, ingest_hwm_mb(d.proc.pid))
        if time.perf_counter() - t > 3600:
            raise TimeoutError("catch-up")
        time.sleep(0.2)
    rate = n / (time.perf_counter() - t)
    out = {"catchup_samples_per_s": rate, "catchup_queue_s": pub_s,
           "catchup_peak_rss_mb_ingest": max(rss_peak, ingest_hwm_mb(d.proc.pid)),
           "catchup_held_messages_peak": d.m("envbox_gateway_held_messages_peak")}
    out["catchup_peak_rss_mb_both"] = d.stop()
    CPU_US[name] = d.cpu_s / n * 1e6
    return out


def seq_step2_commits(work: Path, t0: int) -> tuple[float, float]:
    """Issue 11: 1,000 catch-up batches with seq step 2 made a commit for that box go from 0.9
    to 82 ms. Mean ms per commit of 10 batches (600 samples) of such a box, over the first
    and the last 10 of 100 commits, straight into a spool (no MQTT)."""
    rnd = random.Random(4)
    sp = Spool(work / "seqstep2.sqlite3")
    dev = device_name(99999)
    times = []
    for g in range(100):
        items = []
        for j in range(600):
            k = 600 * g + j
            items.append(Accepted(dev.decode(), 2 * k, t0 + 10 * k,
                                  wire.encode(make_sample(dev, 2 * k, t0 + 10 * k, rnd)),
                                  time.time()))
        c = time.perf_counter()
        sp.ingest(items)
        times.append(time.perf_counter() - c)
    sp.close()
    return sum(times[:10]) * 100, sum(times[-10:]) * 100


def fill_spool(path: Path, n: int, devices: int, t0: int) -> None:
    """A backlog of n samples in the spool, stored through Spool.ingest as the gateway stores
    them. Payloads are real encodings; to build a million quickly, one encoded sample per
    (device, value set) is copied with its seq and time patched in (fixed offsets: the device
    names all have the same length)."""
    rnd = random.Random(3)
    templates = [wire.encode(make_sample(device_name(d), 0, t0, rnd)) for d in range(devices)]
    off = 2 + len(device_name(0))             # kind, id length, id, then seq u32, t u32
    sp = Spool(path, max_rows=max(5_000_000, n))
    group = []
    per_dev = -(-n // devices)
    for i in range(n):
        d, k = i % devices, i // devices
        if k >= per_dev:
            continue
        b = bytearray(templates[d])
        t = t0 + 10 * k
        struct.pack_into(">II", b, off, k, t - EPOCH_2020)
        group.append(Accepted(device_name(d).decode(), k, t, bytes(b), time.time()))
        if len(group) == 10000:
            sp.ingest(group)
            group = []
    if group:
        sp.ingest(group)
    sp.close()


def drain(work, broker, influx, n, devices, t0) -> tuple[float, float]:
    name = "drain"
    fill_spool(work / f"{name}.sqlite3", n, devices, t0)
    t = time.perf_counter()
    d = Daemon(work, name, broker, influx.url, wait_subscribed=False)
    eventually(lambda: d.m("envbox_gateway_written_total") >= n, 1800, interval=0.05,
               what="backlog drained")
    rate = n / (time.perf_counter() - t)
    ROWS_PER_WRITE[name] = n / d.m("envbox_gateway_write_requests_total")
    rss = d.stop()
    CPU_US[name] = d.cpu_s / n * 1e6
    return rate, rss


def main() -> None:
    global PROTOCOL, WRITER_PROCESS, ACKS
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2000, help="boxes publishing live")
    ap.add_argument("--live-samples", type=int, default=40000)
    ap.add_argument("--batched-samples", type=int, default=120000)
    ap.add_argument("--batch-devices", type=int, default=200)
    ap.add_argument("--batch-samples", type=int, default=60, help="samples per batch message")
    ap.add_argument("--drain-samples", type=int, default=1_000_000)
    ap.add_argument("--publishers", type=int, default=3)
    ap.add_argument("--protocol", choices=("5", "3.1.1"), default=gwconfig.MqttConfig.protocol,
                    help="the gateway's MQTT version ([mqtt] protocol)")
    ap.add_argument("--writer-process", dest="writer_process", action="store_true",
                    default=WRITER_PROCESS, help="[sink] writer_process = true")
    ap.add_argument("--writer-thread", dest="writer_process", action="store_false")
    ap.add_argument("--acks", dest="acks", action="store_true", default=ACKS,
                    help="[ack] enabled = true (the default)")
    ap.add_argument("--no-acks", dest="acks", action="store_false")
    ap.add_argument("--catchup-samples", type=int, default=1_000_000,
                    help="queued for the gateway while it is away, then caught up (0 = skip)")
    ap.add_argument("--no-check-baseline", dest="check_baseline", action="store_false",
                    help="skip the batched run with [spool] conflict_window_s = 0")
    args = ap.parse_args()
    ACKS = args.acks
    PROTOCOL = args.protocol
    WRITER_PROCESS = args.writer_process
    t0 = int(time.time()) - 10 * 86400     # inside [ingest] max_past_s and the conflict window
    live_msgs = live_payloads(args.devices, args.live_samples, t0)
    batch_msgs = batched_payloads(args.batch_devices, args.batched_samples, args.batch_samples,
                                  t0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        influx = InfluxDB1(work / "influxdb").start()
        try:
            # the baseline writes the batched run's samples (same boxes, same fresh-database
            # series creation), so ratio_batched compares like with like
            raw = raw_influx(influx, [(d, one) for d, p in batch_msgs for one in wire.singles(p)])
            live_rate, rss1 = published_run(work, broker, influx, "live", live_msgs,
                                            args.live_samples, args.publishers)
            batched_rate, rss2 = published_run(work, broker, influx, "batched", batch_msgs,
                                               args.batched_samples, args.publishers)
            nocheck_rate = None
            if args.check_baseline:
                nocheck_rate, _r = published_run(work, broker, influx, "batchednocheck",
                                                 batch_msgs, args.batched_samples,
                                                 args.publishers,
                                                 spool={"conflict_window_s": 0})
            drain_rate, rss3 = drain(work, broker, influx, args.drain_samples,
                                     args.batch_devices, t0)
            cu = (catchup(work, broker, influx, args.catchup_samples, args.batch_devices, t0,
                          args.publishers) if args.catchup_samples else {})
            step2 = seq_step2_commits(work, t0)
        finally:
            influx.stop()
            broker.stop()
    print(f"cores={os.cpu_count()} devices={args.devices} live_samples={args.live_samples} "
          f"batched_samples={args.batched_samples} batch={args.batch_samples} "
          f"drain_samples={args.drain_samples} publishers={args.publishers} "
          f"protocol={args.protocol} writer_process={args.writer_process} acks={args.acks} "
          f"catchup_samples={args.catchup_samples}")
    print(f"raw_influx_samples_per_s={raw:.0f}")
    print(f"gateway_live_samples_per_s={live_rate:.0f}")
    print(f"gateway_batched_samples_per_s={batched_rate:.0f}")
    print(f"ratio_batched={batched_rate / raw:.3f}")
    print(f"ratio_live={live_rate / raw:.3f}")
    print(f"drain_samples_per_s={drain_rate:.0f}")
    print(f"peak_rss_mb={max(rss1, rss2, rss3):.1f}")
    if nocheck_rate:
        print(f"gateway_batched_nocheck_samples_per_s={nocheck_rate:.0f}")
        print(f"ratio_conflict_check={batched_rate / nocheck_rate:.3f}")
    for k, v in cu.items():
        print(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}")
    print(f"seq_step2_commit_ms_first={step2[0]:.2f}")
    print(f"seq_step2_commit_ms_last={step2[1]:.2f}")
    print("gateway_cpu_us_per_sample=" + ",".join(f"{k}:{v:.0f}" for k, v in CPU_US.items()))
    print("gateway_spooled_samples_per_s=" + ",".join(f"{k}:{v:.0f}" for k, v in SPOOLED_PER_S.items()))
    print("published_samples_per_s=" + ",".join(f"{k}:{v:.0f}" for k, v in PUBLISHED_PER_S.items()))
    print("acks_sent=" + ",".join(f"{k}:{v:.0f}" for k, v in ACKS_SENT.items()))
    print("commit_groups=" + ",".join(f"{k}:{v[0]:.0f}" for k, v in COMMITS.items()))
    print("commit_ms_mean=" + ",".join(f"{k}:{v[1]:.1f}" for k, v in COMMITS.items()))
    print("rows_per_write=" + ",".join(f"{k}:{v:.0f}" for k, v in ROWS_PER_WRITE.items()))
    print(f"peak_rss_mb_by_run=live:{rss1:.1f},batched:{rss2:.1f},drain:{rss3:.1f}")


if __name__ == "__main__":
    main()
