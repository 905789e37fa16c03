"""End to end, for real: simulated modules -> MicroPython firmware -> mosquitto -> gateway ->
InfluxDB 1.6.7 (1.x /write) and VictoriaMetrics (2.x write API through influxdb-client).

Every ground-truth sample of a 30-virtual-minute patrol must be in the database with the right
timestamp, position, values and statuses, and nothing else."""

import pytest

from envbox.demo import run_patrol

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sink", ["influx1", "influx2"])
def test_patrol_arrives_complete_and_exact(tmp_path, sink):
    # warp 30: the host's scheduling latency is not warped; half the warp doubles the margin
    rep, rows = run_patrol(tmp_path / sink, minutes=30, warp=30, sink=sink, seed=7, quiet=True)
    assert rep.produced >= 179, rep.summary_line()   # 30 min at 10 s, minus at most the boot
    assert not rep.missing, f"missing sample times: {rep.missing[:10]}"
    assert not rep.extra, f"extra sample times: {rep.extra[:10]}"
    assert not rep.mismatches, "\n".join(rep.mismatches[:20])
    assert rep.stored == rep.produced
    # the channels really carried values (not only statuses)
    assert sum(1 for r in rows.values() if r.get("pm25_ugm3_status") == 0) > rep.produced - 10
    assert all("lat_deg" in r for r in rows.values())
