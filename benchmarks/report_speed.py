"""`envbox report` against reading the same samples out of InfluxDB alone, same run.

Fills a fresh InfluxDB 1.6.7 with a fleet campaign of the default world (simulator/fleet.py, as
many vehicles over --days as make --samples; the lines are the gateway's own, from its
LineBuilder, POSTed straight to /write: the gateway's path is benchmarked in
gateway_throughput.py), then:

  db_read_samples_per_s    the report's reader alone (envbox.report.read.read_influx1: the same
                           InfluxQL queries, day chunks, two at a time, CSV parsed into arrays),
                           best of two runs, interleaved with the two report runs
  db_fetch_samples_per_s   the same queries with the answers' bytes only (no parsing)
  report_samples_per_s     `envbox report --influx URL ... --out DIR` as a child process, start
                           to exit (read, segments, statistics, hotspots, every file and plot),
                           best of two runs
  ratio_report_to_read     report_samples_per_s / db_read_samples_per_s (aim: >= 0.5)
  report_peak_rss_mb       peak resident memory of the report processes (aim: < 1024)

Usage: python benchmarks/report_speed.py [--samples 1000000] [--days 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from envbox.firmware import wire
from envbox.gateway.lines import LineBuilder
from envbox.report import read
from envbox.servers import InfluxDB1
from envbox.simulator import fleet as F
from envbox.simulator.world import load_world

DB = "envbox"


def fill(db: InfluxDB1, fs: F.FleetSampler) -> tuple[int, float]:
    lb = LineBuilder("envbox")
    url = f"{db.url}/write?db={DB}&precision=s"
    n = 0
    lines: list[str] = []
    t0 = time.monotonic()

    def post(body: bytes):
        req = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
    with ThreadPoolExecutor(1) as ex:
        pending = None
        for dev, payload, k in fs.messages():
            for single in wire.singles(payload):
                lines.append(lb.line(dev, single))
            n += k
            if len(lines) >= 5000:
                if pending:
                    pending.result()
                pending = ex.submit(post, ("\n".join(lines) + "\n").encode())
                lines = []
                if n % 100_000 < 5000:
                    print(f"  filled {n:,} samples", file=sys.stderr, flush=True)
        if pending:
            pending.result()
        if lines:
            post(("\n".join(lines) + "\n").encode())
    return n, time.monotonic() - t0


def timed_read(db, t0, t1) -> tuple[int, float]:
    s = time.monotonic()
    df = read.read_influx1(db.url, DB, t0, t1)
    return len(df), time.monotonic() - s


def timed_fetch(db, t0, t1) -> float:
    s = time.monotonic()
    chunks = list(read._chunks(t0, t1, read.CHUNK_S))
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda c: read.influx1_fetch(db.url, DB, c[0], c[1]), chunks))
    return time.monotonic() - s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000, help="at least this many")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--keep", help="keep the database and the report here")
    a = ap.parse_args()
    spec = load_world()
    day0 = F.campaign_start_s(spec, a.days)
    k = len(spec.vehicles)
    while True:
        fs = F.FleetSampler(spec, k, a.days, day0)
        if fs.total_samples() >= a.samples:
            break
        k = max(k + 1, int(k * a.samples / max(1, fs.total_samples())))
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="envbox-report-bench-"))
    if work.exists() and a.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "roads.geojson").write_text(json.dumps(spec.roads_geojson()))
    db = InfluxDB1(work / "influxdb").start()
    try:
        db.create_db(DB)
        print(f"filling: {k} vehicles x {a.days} days = {fs.total_samples():,} samples",
              file=sys.stderr, flush=True)
        n, fill_s = fill(db, fs)
        t0, t1 = day0, day0 + a.days * 86400
        # let InfluxDB settle (its cache snapshot runs after 10 s of no writes)
        time.sleep(12)
        out = work / "report"
        exe = os.path.join(os.path.dirname(sys.executable), "envbox")
        argv = [exe, "report", "--influx", db.url, "--db", DB,
                "--from", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
                "--to", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t1)),
                "--roads", str(work / "roads.geojson"), "--out", str(out), "--basemap", "none"]
        reads, reports, counts = [], [], []
        fetch_s = timed_fetch(db, t0, t1)
        for _ in range(2):          # interleaved, best of two each: the machine is shared
            n_read, rs = timed_read(db, t0, t1)
            counts.append(n_read)
            reads.append(rs)
            s = time.monotonic()
            r = subprocess.run(argv, capture_output=True, text=True)
            reports.append(time.monotonic() - s)
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        read1, read2 = reads
        report_s = min(reports)
        n_read2 = counts[1]
        summary = json.loads((out / "summary.json").read_text())
    finally:
        db.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    read_s = min(read1, read2)
    report_rate = n_read / report_s
    read_rate = n_read / read_s
    print(f"samples={n_read}")
    print(f"fill_samples_per_s={n / fill_s:.0f}")
    print(f"db_fetch_samples_per_s={n_read / fetch_s:.0f}")
    print(f"db_read_samples_per_s={read_rate:.0f}")
    print(f"report_samples_per_s={report_rate:.0f}")
    print(f"ratio_report_to_read={report_rate / read_rate:.3f}")
    print(f"report_peak_rss_mb={rss_kb / 1024:.1f}")
    print(f"report_read_s={summary['read_s']} report_analysis_s={summary['analysis_s']} "
          f"report_write_s={summary['write_s']} (last run) reports_s={reports[0]:.2f},"
          f"{reports[1]:.2f} reads_s={read1:.2f},{read2:.2f}")
    return 0 if n_read == n == n_read2 else 1


if __name__ == "__main__":
    sys.exit(main())
