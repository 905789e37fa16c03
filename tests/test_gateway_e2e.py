"""Gateway end to end with real servers: mosquitto -> gateway -> InfluxDB 1.6.7 (influx1 sink) or
VictoriaMetrics (influx2 sink, the influxdb-client 2.x write path).

Every test uses its own client id, topic prefix and device ids. Expected values are computed here
from the samples the test built (physical value = raw / scale, scales as in docs/contracts.md),
not read back from the gateway's code.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envbox.firmware import wire
from envbox.gateway import Gateway
from envbox.gateway import config as gwconfig
from envbox.servers import InfluxDB1, Mosquitto, VictoriaMetrics, eventually

pytestmark = pytest.mark.slow

EPOCH_2020 = 1577836800
STATUS = {"ok": 0, "warming_up": 1, "no_data": 2, "checksum_error": 3, "out_of_range": 4,
          "sensor_error": 6}
# (wire channel index, field name, scale) for the channels these tests fill
CHS = [(1, "pm25_ugm3", 1), (7, "co_ppm", 10), (9, "noise_dba", 10), (10, "temp_c", 100),
       (11, "rh_pct", 100)]


# --- fixtures and helpers ---------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.fixture
def influx(tmp_path):
    s = InfluxDB1(tmp_path / "influxdb").start()
    yield s
    s.stop()


@pytest.fixture
def vm(tmp_path):
    s = VictoriaMetrics(tmp_path / "vm").start()
    yield s
    s.stop()


@pytest.fixture
def uid():
    return uuid.uuid4().hex[:8]


def make_cfg(tmp_path, broker, uid, sink_base: dict, **sections) -> gwconfig.Config:
    base = {
        "mqtt": {"port": broker.port, "client_id": f"gw-{uid}", "topic": f"t{uid}/v1/+/data",
                 "reconnect_min_s": 1.0, "reconnect_max_s": 2.0},
        "spool": {"path": str(tmp_path / "spool.sqlite3")},
        "sink": {"retry_initial_s": 0.2, "retry_max_s": 1.0, "timeout_s": 5.0, **sink_base},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return gwconfig.Config().replace(**base)


def influx1_sink(influx, uid):
    return {"kind": "influx1", "url": influx.url, "database": f"db{uid}"}


def vm_sink(vm):
    return {"kind": "influx2", "url": vm.url, "bucket": "envbox", "org": "envbox",
            "token": "unused-by-victoria"}


def build(device: str, n: int, seq0: int = 0, t0: int | None = None):
    """n samples of `device`; returns [(payload, t_utc_s, expected_fields)]."""
    t0 = t0 if t0 is not None else int(time.time()) - 3 * 86400
    out = []
    for i in range(n):
        seq = seq0 + i
        s = wire.Sample(device.encode())
        s.seq = seq
        t = t0 + 10 * seq
        s.t_s2020 = t - EPOCH_2020
        s.flags = (wire.FLAG_CLOCK_FROM_GPS if seq % 4 else wire.FLAG_CLOCK_FROM_NTP) | (
            wire.FLAG_CALIBRATED if seq % 11 == 0 else 0)
        exp = {"seq": float(seq), "flags": float(s.flags)}
        if seq % 3:
            s.fix_quality, s.sats, s.hdop_x10 = 1, 5 + seq % 7, 8 + seq % 13
            s.lat_e7, s.lon_e7 = 398_800_000 + seq * 37, 1_164_500_000 - seq * 53
            s.alt_dm, s.speed_kmh_x10, s.course_x10 = 400 + seq % 50, seq % 600, (seq * 7) % 3600
            exp.update(fix_quality=1.0, sats=float(s.sats), hdop=s.hdop_x10 / 10,
                       lat_deg=s.lat_e7 / 1e7, lon_deg=s.lon_e7 / 1e7, alt_m=s.alt_dm / 10,
                       speed_kmh=s.speed_kmh_x10 / 10, course_deg=s.course_x10 / 10)
            if seq % 7 == 0:               # standing still: the receiver gives no course
                s.course_x10 = 0xFFFF
                del exp["course_deg"]
        else:
            exp["fix_quality"] = 0.0
        for k, (ch, name, scale) in enumerate(CHS):
            if (seq + k) % 5 == 0:
                s.set(ch, wire.STATUS_WARMING_UP)
                exp[name + "_status"] = float(STATUS["warming_up"])
            else:
                raw = (seq * 31 + k * 1000) % 4000 - (500 if name == "temp_c" else 0)
                s.set(ch, wire.STATUS_OK, raw)
                exp[name] = raw / scale
                exp[name + "_status"] = 0.0
        out.append((wire.encode(s), t, exp))
    return out


class Publisher:
    """A box stand-in: paho QoS 1 publisher that can wait for every PUBACK."""

    def __init__(self, broker, uid, name="pub"):
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uid}",
                             protocol=mqtt.MQTTv5)
        self.c.max_queued_messages_set(0)
        self.c.max_inflight_messages_set(200)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        self.infos = []

    def send(self, topic, payload):
        self.infos.append(self.c.publish(topic, payload, qos=1))

    def wait(self, timeout=60):
        for i in self.infos:
            i.wait_for_publish(timeout)
            assert i.is_published()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def topic(uid, device):
    return f"t{uid}/v1/{device}/data"


def influx_rows(influx, db, device):
    return influx.rows(f"SELECT * FROM envbox WHERE device = '{device}'", db)


def assert_influx_exact(influx, db, device, samples):
    rows = influx_rows(influx, db, device)
    assert len(rows) == len(samples), f"{len(rows)} points stored, {len(samples)} sent"
    by_t = {r["time"]: r for r in rows}
    assert len(by_t) == len(samples)
    for _p, t, exp in samples:
        r = by_t[t]
        got = {k: v for k, v in r.items() if v is not None and k not in ("time", "device")}
        assert got == exp, f"t={t}"


def vm_points(vm, device):
    vm.flush()
    pts = {}
    for s in vm.export(f'{{__name__=~"envbox_.*",device="{device}"}}'):
        field = s["metric"]["__name__"][len("envbox_"):]
        for v, ts in zip(s["values"], s["timestamps"]):
            pts.setdefault(ts // 1000, {}).setdefault(field, []).append(v)
    return pts


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("gzip", [False, True])
def test_influx1_every_sample_once_with_box_time_and_values(tmp_path, broker, influx, uid, gzip):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), sink={"gzip": gzip})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        devs = {f"a{uid}": build(f"a{uid}", 600), f"b{uid}": build(f"b{uid}", 400, seq0=1000)}
        for dev, samples in devs.items():
            for p, _t, _e in samples:
                pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 1000, 30, what="1000 written")
        for dev, samples in devs.items():
            assert_influx_exact(influx, f"db{uid}", dev, samples)
        st = gw.stats()
        assert (st["received"], st["spooled"], st["acked"], st["dead_lettered"]) == \
            (1000, 1000, 1000, 0)
        status = {d["device"]: d for d in gw.spool.device_status()}
        assert status[f"a{uid}"]["missing"] == 0 and status[f"a{uid}"]["received"] == 600
        assert status[f"b{uid}"]["first_seq"] == 1000
        pub.close()
    finally:
        gw.stop()


@pytest.mark.parametrize("gzip", [False, True])
def test_influx2_sink_against_victoriametrics(tmp_path, broker, vm, uid, gzip):
    cfg = make_cfg(tmp_path, broker, uid, vm_sink(vm), sink={"gzip": gzip})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        dev = f"v{uid}"
        samples = build(dev, 500)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 500, 30, what="500 written")
        pts = vm_points(vm, dev)
        assert sorted(pts) == sorted(t for _p, t, _e in samples)
        for _p, t, exp in samples:
            assert pts[t] == {k: [v] for k, v in exp.items()}, f"t={t}"   # once, exact
        pub.close()
    finally:
        gw.stop()


def test_malformed_payloads_are_dead_lettered_and_counted(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        dev = f"m{uid}"
        good = build(dev, 30)
        pub = Publisher(broker, uid)
        bad = [os.urandom(40), good[0][0][:9], b"", b"\x01"]
        future = build(dev, 1, seq0=500, t0=int(time.time()) + 3 * 86400 - 5000)[0][0]
        for i, (p, _t, _e) in enumerate(good):
            pub.send(topic(uid, dev), p)
            if i < len(bad):
                pub.send(topic(uid, dev), bad[i])
        pub.send(topic(uid, f"other{uid}"), good[5][0])    # payload of dev on another topic
        pub.send(topic(uid, dev), future)
        pub.wait()
        eventually(lambda: gw.stats()["received"] == 30 + 4 + 2, 20)
        eventually(lambda: gw.stats()["written"] == 30, 20)
        st = gw.stats()
        assert (st["malformed"], st["rejected"], st["dead_lettered"]) == (4, 2, 6)
        assert gw.alive()
        assert_influx_exact(influx, f"db{uid}", dev, good)
        reasons = sorted(d["reason"].split(":")[0] for d in gw.spool.dead_letters())
        assert reasons == ["device mismatch"] + ["malformed"] * 4 + \
            [r for r in reasons if r.startswith("timestamp")]
        assert len(reasons) == 6
        pub.close()
    finally:
        gw.stop()


def test_influxdb_down_while_samples_flow(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), sink={"batch_size": 100})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        dev = f"o{uid}"
        samples = build(dev, 900)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples[:300]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 300, 20)
        influx.stop()
        for p, _t, _e in samples[300:]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        # everything is acknowledged to the broker and held in the spool while InfluxDB is down
        eventually(lambda: gw.stats()["acked"] == 900 and gw.spool.depth == 600, 20)
        eventually(lambda: gw.stats()["retried"] >= 2, 20)
        influx.start()
        eventually(lambda: gw.stats()["written"] == 900, 60, what="900 written after restart")
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        assert gw.stats()["dead_lettered"] == 0
        pub.close()
    finally:
        gw.stop()


# The gateway's session in both MQTT versions it supports ([mqtt] protocol): kept across
# gateway and broker restarts, shared subscriptions, and acknowledged only after the commit.
PROTOCOLS = pytest.mark.parametrize("protocol", ["5", "3.1.1"])


@PROTOCOLS
def test_gateway_away_persistent_session_delivers_what_was_queued(tmp_path, broker, influx, uid,
                                                                 protocol):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), mqtt={"protocol": protocol})
    dev = f"s{uid}"
    samples = build(dev, 400)
    gw = Gateway(cfg).start()
    assert gw.ingest.wait_subscribed(10)
    assert gw.ingest.session_present is False
    gw.stop()
    pub = Publisher(broker, uid)
    for p, _t, _e in samples:          # published while no gateway is connected
        pub.send(topic(uid, dev), p)
    pub.wait()
    gw = Gateway(cfg).start()
    try:
        eventually(lambda: gw.stats()["written"] == 400, 30)
        assert gw.ingest.session_present is True
        assert gw.stats()["session_missing"] == 0
        assert_influx_exact(influx, f"db{uid}", dev, samples)
    finally:
        gw.stop()
        pub.close()


def test_poison_rows_are_isolated_and_good_rows_written(tmp_path, broker, influx, uid):
    db, dev = f"db{uid}", f"p{uid}"
    samples = build(dev, 40)
    # Make pm25_ugm3 a string field in this shard: InfluxDB then refuses every float pm25_ugm3
    # point with "field type conflict" (HTTP 400, partial write).
    influx.create_db(db)
    t_first = samples[0][1]
    req = urllib.request.Request(
        f"{influx.url}/write?db={db}&precision=s",
        data=f'envbox,device=x{uid} pm25_ugm3="text" {t_first}'.encode(), method="POST")
    assert urllib.request.urlopen(req).status == 204
    poison = [s for s in samples if "pm25_ugm3" in s[2]]
    clean = [s for s in samples if "pm25_ugm3" not in s[2]]
    assert poison and clean
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), sink={"batch_size": 50})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] + gw.stats()["dead_lettered_sink"] == 40, 60)
        st = gw.stats()
        assert (st["written"], st["dead_lettered_sink"]) == (len(clean), len(poison))
        assert st["bisections"] >= 1
        dls = gw.spool.dead_letters(source="sink")
        assert sorted(d["seq"] for d in dls) == sorted(int(e["seq"]) for _p, _t, e in poison)
        assert all("field type conflict" in d["server_answer"] for d in dls)
        rows = influx_rows(influx, db, dev)
        assert sorted(r["time"] for r in rows) == sorted(t for _p, t, _e in clean)
        pub.close()
    finally:
        gw.stop()


def test_metrics_and_healthz(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   http={"listen": "127.0.0.1:0"})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        pub = Publisher(broker, uid)
        for p, _t, _e in build(f"h{uid}", 10):
            pub.send(topic(uid, f"h{uid}"), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 10)
        base = f"http://127.0.0.1:{gw.http.port}"
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        assert "envbox_gateway_written_total 10\n" in text
        assert "envbox_gateway_received_total 10\n" in text
        assert "# TYPE envbox_gateway_spool_depth_samples gauge" in text
        h = json.load(urllib.request.urlopen(base + "/healthz"))
        assert h["ok"] is True and h["mqtt_connected"] is True and h["mqtt_subscribed"] is True
        broker.stop()
        eventually(lambda: not gw.ingest.connected)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/healthz")
        assert e.value.code == 503
        assert "not connected" in json.load(e.value)["problems"][0]
        broker.start()
        eventually(lambda: json.load(urllib.request.urlopen(base + "/healthz"))["ok"], 15)
        pub.close()
    finally:
        gw.stop()


# --- the daemon as a process ------------------------------------------------------------------

def write_toml(path, cfg: gwconfig.Config):
    lines = []
    for sec in gwconfig.SECTIONS:
        lines.append(f"[{sec}]")
        obj = getattr(cfg, sec)
        for f in gwconfig.fields(obj):
            v = getattr(obj, f.name)
            lines.append(f"{f.name} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_daemon(conf, log):
    return subprocess.Popen([sys.executable, "-m", "envbox.gateway.cli", "--log-level", "WARNING",
                             "run", "--config", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)


def daemon_subscribed(path, proc, log_path):
    """The daemon records its first SUBACK in the spool; wait for it (or report its log)."""
    def cond():
        assert proc.poll() is None, Path(log_path).read_text()
        c = sqlite3.connect(path, timeout=5)
        try:
            return c.execute("SELECT value FROM counters WHERE name='mqtt_connects'").fetchone()
        finally:
            c.close()
    eventually(cond, 20, what="daemon subscribed")


def spool_written(path):
    try:
        c = sqlite3.connect(path, timeout=5)
        r = c.execute("SELECT value FROM counters WHERE name='written'").fetchone()
        c.close()
        return r[0] if r else 0
    except sqlite3.Error:
        return 0


def test_sigterm_stops_cleanly_and_status_works_while_running(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    conf = write_toml(tmp_path / "gw.toml", cfg)
    with open(tmp_path / "gw.log", "wb") as log:
        proc = start_daemon(conf, log)
    try:
        daemon_subscribed(cfg.spool.path, proc, tmp_path / "gw.log")
        dev = f"c{uid}"
        samples = build(dev, 50)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples[:20] + samples[30:]:      # seq 20..29 never sent
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: spool_written(cfg.spool.path) == 40, 30)
        out = subprocess.run([sys.executable, "-m", "envbox.gateway.cli", "status", "--json",
                              "--config", str(conf)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        [d] = st["devices"]
        assert (d["expected"], d["received"], d["missing"]) == (50, 40, 10)
        assert d["missing_ranges"] == [[20, 29]]
        text = subprocess.run([sys.executable, "-m", "envbox.gateway.cli", "status",
                               "--config", str(conf)], capture_output=True, text=True, timeout=30)
        assert "20-29" in text.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        pub.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@PROTOCOLS
def test_sigkill_while_samples_flow_loses_nothing(tmp_path, broker, influx, uid, protocol):
    # A sample acknowledged before its commit would be lost by the kill: every one must arrive.
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), sink={"batch_size": 200},
                   mqtt={"protocol": protocol})
    conf = write_toml(tmp_path / "gw.toml", cfg)
    dev = f"k{uid}"
    samples = build(dev, 3000)
    log = open(tmp_path / "gw.log", "ab")
    proc = start_daemon(conf, log)
    pub = Publisher(broker, uid)
    try:
        # make sure the session exists before the first publish (else the broker has nobody to
        # queue for)
        daemon_subscribed(cfg.spool.path, proc, tmp_path / "gw.log")

        def feed():
            for i, (p, _t, _e) in enumerate(samples):
                pub.send(topic(uid, dev), p)
                if i % 50 == 49:
                    time.sleep(0.05)     # ~3 s of traffic, so the kill lands mid-stream
        feeder = threading.Thread(target=feed)
        feeder.start()
        eventually(lambda: spool_written(cfg.spool.path) >= 500, 30)
        proc.kill()                                      # SIGKILL mid-stream
        proc.wait()
        assert feeder.is_alive(), "the feed ended before the kill: the test proves nothing"
        feeder.join()
        pub.wait()
        proc = start_daemon(conf, log)
        eventually(lambda: len(influx_rows(influx, f"db{uid}", dev)) == 3000, 60,
                   what="all 3000 in InfluxDB")
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        c = sqlite3.connect(cfg.spool.path)
        assert c.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0
        ranges = c.execute("SELECT start_seq, end_seq FROM seq_ranges").fetchall()
        assert ranges == [(0, 2999)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()
        log.close()


def children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def pid_gone(pid):
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return st.rpartition(")")[2].split()[0] == "Z"      # a zombie has stopped running


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_writer_process_ends_with_the_gateway(tmp_path, broker, influx, uid, sig):
    # [sink] writer_process: SIGTERM stops both processes cleanly after writing what was
    # spooled; SIGKILL of the gateway takes its writer with it (no orphan racing the next one).
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   sink={"writer_process": True})
    conf = write_toml(tmp_path / "gw.toml", cfg)
    dev = f"w{uid}"
    samples = build(dev, 300)
    with open(tmp_path / "gw.log", "wb") as log:
        proc = start_daemon(conf, log)
    pub = Publisher(broker, uid)
    try:
        daemon_subscribed(cfg.spool.path, proc, tmp_path / "gw.log")
        [child] = children(proc.pid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: spool_written(cfg.spool.path) == 300, 30)   # written by the child
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        proc.send_signal(sig)
        assert proc.wait(20) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        eventually(lambda: pid_gone(child), 10, what="writer process gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()


def test_influxdb_paused_writes_time_out_and_are_retried(tmp_path, broker, influx, uid):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid),
                   sink={"timeout_s": 1.0, "batch_size": 100})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        dev = f"w{uid}"
        samples = build(dev, 300)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples[:100]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 100, 20)
        influx.pause()                       # SIGSTOP: accepts connections, never answers
        try:
            for p, _t, _e in samples[100:]:
                pub.send(topic(uid, dev), p)
            pub.wait()
            eventually(lambda: gw.stats()["retried"] >= 2, 20, what="time-outs retried")
            assert gw.stats()["written"] == 100
        finally:
            influx.resume()
        eventually(lambda: gw.stats()["written"] == 300, 30)
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        pub.close()
    finally:
        gw.stop()


@PROTOCOLS
def test_broker_restart_keeps_the_session(tmp_path, broker, influx, uid, protocol):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid), mqtt={"protocol": protocol})
    gw = Gateway(cfg).start()
    try:
        assert gw.ingest.wait_subscribed(10)
        dev = f"b{uid}"
        samples = build(dev, 200)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples[:100]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        pub.close()
        eventually(lambda: gw.stats()["written"] == 100, 20)
        broker.stop()                        # saves its persistence file
        eventually(lambda: not gw.ingest.connected)
        broker.start()
        assert gw.ingest.wait_subscribed(15)
        assert gw.ingest.session_present is True
        assert gw.stats()["session_missing"] == 1          # only the very first connection
        pub = Publisher(broker, uid, name="pub2")
        for p, _t, _e in samples[100:]:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: gw.stats()["written"] == 200, 20)
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        pub.close()
    finally:
        gw.stop()


@PROTOCOLS
def test_shared_subscription_splits_the_fleet_between_two_gateways(tmp_path, broker, influx,
                                                                   uid, protocol):
    gws = []
    try:
        for k in range(2):
            cfg = make_cfg(tmp_path, broker, f"{uid}{k}", influx1_sink(influx, uid),
                           mqtt={"topic": f"t{uid}/v1/+/data", "shared_group": f"g{uid}",
                                 "protocol": protocol},
                           spool={"path": str(tmp_path / f"spool{k}.sqlite3")})
            gws.append(Gateway(cfg).start())
            assert gws[-1].ingest.wait_subscribed(10)
        dev = f"g{uid}"
        samples = build(dev, 200)
        pub = Publisher(broker, uid)
        for p, _t, _e in samples:
            pub.send(topic(uid, dev), p)
        pub.wait()
        eventually(lambda: sum(g.stats()["written"] for g in gws) == 200, 20)
        assert all(g.stats()["received"] > 0 for g in gws)         # both took a share
        assert sum(g.stats()["received"] for g in gws) == 200      # nobody got a copy
        assert_influx_exact(influx, f"db{uid}", dev, samples)
        pub.close()
    finally:
        for g in gws:
            g.stop()


def test_lost_broker_session_is_counted_and_logged(tmp_path, broker, influx, uid, caplog):
    cfg = make_cfg(tmp_path, broker, uid, influx1_sink(influx, uid))
    gw = Gateway(cfg).start()
    assert gw.ingest.wait_subscribed(10)
    gw.stop()
    # the broker comes back without its persistence file (a new SD card, a wiped /var/lib)
    broker.stop()
    fresh = Mosquitto(tmp_path / "mosquitto-fresh", port=broker.port).start()
    try:
        caplog.set_level("WARNING", logger="envbox.gateway.ingest")
        gw = Gateway(cfg).start()
        try:
            assert gw.ingest.wait_subscribed(10)
            assert gw.ingest.session_present is False
            assert gw.stats()["session_missing"] == 1
            assert "the broker had no session" in caplog.text
        finally:
            gw.stop()
    finally:
        fresh.stop()
        broker.start()      # for the fixture's teardown
