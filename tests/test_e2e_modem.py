"""The box as flashed, through its LTE modem, end to end: the firmware under the MicroPython Unix
port on the `sim` board with the simulator's SIMCom modem (the LTE board's link supervisor,
SIMCom driver and network time; the broker reached only through the modem's data link), the
product's mosquitto, the real gateway and InfluxDB 1.6.7 (tools/demo.py run_patrol).

Each scenario ends with every sample the box took stored exactly once in InfluxDB (ground truth:
the simulator's record of every module answer and GNSS second, tools/verify.py), at the right
time, with one contiguous run of sequence numbers, and with the box's status messages saying
what happened. Which time source stamped each sample is read from what the box published (the
wire flags; the gateway does not write them to InfluxDB).

  the carrier dropped every 5 virtual minutes for a virtual hour
  the box SIGKILLed while the modem is in PPP data mode (escaped, not power-cycled; the RTC
      kept across the reset stamps at once)
  the SIM missing for 10 minutes, then inserted
  a garage start: no GNSS fix for 15 minutes (the modem's network time stamps the samples held
      since boot, then every sample until the fix); a reset in the garage (the RTC)

The PMS5003 + GNSS kit at warp 60: the point here is the link and the clock, not the sensors
(tests/test_e2e.py runs the full kit)."""

import json
from pathlib import Path

import pytest

from envbox import verify
from envbox.demo import PM_GNSS_HEAP, run_patrol
from envbox.firmware import wire
from envbox.simulator.truth import read_ground_truth

pytestmark = pytest.mark.slow
WARP = 60
GPS, NTP, RTC = wire.FLAG_CLOCK_FROM_GPS, wire.FLAG_CLOCK_FROM_NTP, wire.FLAG_CLOCK_FROM_RTC
TICKS = wire.FLAG_TIME_FROM_TICKS
EPOCH = 1577836800


def patrol(tmp_path, minutes, **kw):
    rep, rows = run_patrol(tmp_path / "run", minutes=minutes, warp=WARP, sink="influx1",
                           seed=kw.pop("seed", 21), quiet=True, kit="pm-gnss",
                           heap=PM_GNSS_HEAP, modem=kw.pop("modem", "sim7600"), **kw)
    return rep, rows, tmp_path / "run"


class Truth:
    def __init__(self, run: Path):
        sim = json.loads((run / "sim" / "sim.json").read_text())
        self.start = int(sim["t0_virtual_s"])
        self.until = int(sim["run_until_virtual_s"])
        self.path = str(run / "sim" / "ground_truth.jsonl")
        recs = read_ground_truth(self.path)
        self.pms = [r for r in recs if r.get("kind") == "pms5003"]
        self.gnss = {r["t"]: r for r in recs if r.get("kind") == "gnss"}
        self.exp = verify.expected_from_truth(self.path, self.until)


def check_once(rep, rows, truth: Truth, restarts_at_s=()):
    """Every sample the box took is stored once, at its time, with the values the modules
    sent; returns the held rows (taken before any time source, on the tick counter: flagged
    FLAG_TIME_FROM_TICKS in what the box published, and mostly off the 10 s grid).

    Grid samples are compared slot by slot (tools/verify.py). A held sample is stamped with the
    second the box took it, which is where its PMS5003 request is in the truth; it is compared
    with that answer. `restarts_at_s`: virtual seconds from the start where the box was
    SIGKILLed and started again (the kills themselves land a few virtual seconds later:
    rep.killed_at_s); slots where it took nothing then (no request in the truth) may be missing,
    as may the one slot it was taking at the instant of each kill, and its drivers count their
    modules' warm-up again after each."""
    gaps_ok = bool(restarts_at_s)
    held = {t: r for t, r in rows.items() if rep.flags.get(t, 0) & TICKS}
    grid = {t: r for t, r in rows.items() if t not in held}
    assert not [t for t in grid if t % 10], "only held samples are off the grid"
    exp = truth.exp
    res = verify.compare(exp, grid)
    assert not res.extra, f"stored at times no sample was taken: {res.extra[:10]}"
    unsampled = {t for t, e in exp.slots.items() if e.get("pms5003") is None}
    # the slot the expectation filed each request under (verify.request_slot: a held sample's
    # request falls anywhere between two grid seconds)
    filed = {e["pms5003"]["t_virtual"]: t for t, e in exp.slots.items() if e.get("pms5003")}
    covered = set()
    for t, row in held.items():
        # the request the box made in second t (its clock: the network's, +-0.5 s)
        recs = [r for r in truth.pms if abs(r["t_virtual"] - (t + 0.5)) <= 1.5]
        assert len(recs) == 1, f"held sample t={t}: requests near it {recs}"
        rec = recs[0]
        covered.add(filed.get(rec["t_virtual"], rec["slot"]))
        one = verify.Expected({t: {"gnss": truth.gnss.get(t), "pms5003": rec}}, exp.first_slot,
                              exp.last_slot, {"pms5003"})
        r1 = verify.compare(one, {t: row})
        assert not r1.mismatches and not r1.missing, (t, r1.mismatches)
    missing = set(res.missing) - covered
    # when each SIGKILL landed (virtual; up to one 0.2 s wall poll after the minute asked for)
    kills = [truth.start + k for k in rep.killed_at_s]
    assert len(kills) == len(restarts_at_s) and all(
        0 <= k - truth.start - r <= 30 for k, r in zip(kills, restarts_at_s)), rep.killed_at_s
    if gaps_ok:
        missing -= unsampled
        # the slot the box was taking when it was killed: the module answered (so the truth has
        # the request) but the sample was not yet in the journal; it dies with the box, as in a
        # power cut mid-sample. One slot per kill at most; one the box had journaled would show
        # below as a gap in the sequence numbers, which survive reboots.
        mid = {t for t in missing if any(t <= k < t + 10 for k in kills)}
        assert len(mid) <= len(kills), sorted(mid)
        missing -= mid
    assert not missing, f"samples taken but not stored: {sorted(missing)[:10]}"
    # after a restart the drivers count their modules' warm-up again (a box cannot know how
    # long they have been powered): warming_up is right there, as after the first boot
    restarts = kills

    def excused(m):
        t = int(m.split()[0][2:].rstrip(":"))
        if t in covered:
            return True
        if gaps_ok and "answer in the truth" in m:
            return True
        return "status warming_up" in m and any(0 < t - r <= 200 for r in restarts)
    wrong = [m for m in res.mismatches if not excused(m)]
    assert not wrong, (f"start {truth.start}, restarts {[r - truth.start for r in restarts]}:\n"
                       + "\n".join(wrong[:20]))
    # exactly once, nothing lost between: one contiguous run of sequence numbers (they survive
    # reboots), one per stored time
    seqs = sorted(int(r["seq"]) for r in rows.values())
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq gaps or repeats"
    assert len(rows) == len(grid) + len(held)
    return held


def statuses(rep, boot=None):
    out = [s for s in rep.status if "boot" in s]
    return [s for s in out if boot is None or s["boot"] == boot]


def by_source(flags):
    n = {"gnss": 0, "network": 0, "rtc": 0, "none": 0, "ticks": 0}
    for f in flags.values():
        n["gnss" if f & GPS else "network" if f & NTP else "rtc" if f & RTC else "none"] += 1
        n["ticks"] += bool(f & TICKS)
    return n


def test_carrier_dropped_every_5_minutes_for_an_hour(tmp_path):
    def drops(sim):
        sim.modem_model.carrier_drop_every_s = 300   # the network ends every call after 5 min

    rep, rows, run = patrol(tmp_path, 60, sim_setup=drops)
    truth = Truth(run)
    check_once(rep, rows, truth)
    assert rep.produced >= 340, rep.summary_line()
    last = statuses(rep)[-1]
    link = last["link"]
    # the first call starts about 80 s in (modem boot, registration): ten or eleven drops
    assert link["drops"] >= 10 and link["ups"] == link["drops"] + 1, link
    assert link["last_error"].startswith("no carrier"), link
    assert link["power_cycles"] == 0 and link["escapes"] == 0, link
    assert last["reconnects"] >= 10 and last["journal_depth"] <= 6, last
    assert by_source(rep.flags)["gnss"] == len(rows), "every sample stamped from GNSS"
    print(f"figures: drops={link['drops']} reconnects={last['reconnects']} "
          f"resends={last['resends']} batches={last['batches']} stored={rep.stored}")


def test_box_killed_while_the_modem_is_in_data_mode(tmp_path):
    rep, rows, run = patrol(tmp_path, 8, kill_at=(4,))
    truth = Truth(run)
    check_once(rep, rows, truth, restarts_at_s=(240,))
    first, second = statuses(rep, 1), statuses(rep, 2)
    assert first and second, "status messages from both boots"
    s = second[-1]
    assert s["reset_cause"] == "power_loss_or_crash"
    link = s["link"]
    # the modem was still in PPP data mode: escaped with +++ and hung up, dialled again, never
    # power-cycled
    assert link["escapes"] == 1 and link["power_cycles"] == 0 and link["state"] == "up", link
    # the RTC kept its time across the reset: the clock was known at once, nothing was held
    assert s["clock_first"] == "rtc" and s["clock_first_s"] == 0, s
    assert s["clock"] == "gnss" and s["held_lost_at_boot"] == 0
    assert not by_source(rep.flags)["ticks"]
    gap = sorted(t for t, e in truth.exp.slots.items() if e.get("pms5003") is None)
    assert all(0 <= t - truth.start - 240 <= 120 for t in gap), "unsampled only while restarting"
    print(f"figures: unsampled while restarting={len(gap)} slots, resends={s['resends']}")


def test_sim_missing_for_10_minutes_then_inserted(tmp_path):
    def no_sim(sim):
        sim.modem_model.sim_inserted = False

    def insert(sim):
        with sim.modem.lock:
            sim.modem_model.sim_inserted = True   # read by the modem at its next start

    rep, rows, run = patrol(tmp_path, 15, sim_setup=no_sim, events=((10, insert),))
    truth = Truth(run)
    check_once(rep, rows, truth)
    st = statuses(rep)
    assert st, "status messages once the link came up"
    first = st[0]
    # nothing reached the broker for 10 minutes: the first status message came after the SIM
    assert first["t_s2020"] + EPOCH >= truth.start + 600, first
    link = st[-1]["link"]
    assert link["sim"] == "ready" and link["state"] == "up" and link["power_cycles"] >= 1, link
    # the backlog of those minutes went in batches, and the journal drained
    assert st[-1]["batches"] >= 1 and st[-1]["journal_depth"] <= 6, st[-1]
    up_s = first["t_s2020"] + EPOCH - truth.start
    print(f"figures: link up {up_s - 600} s after the SIM went in; "
          f"power_cycles={link['power_cycles']} batches={st[-1]['batches']}")


def test_garage_start_no_fix_for_15_minutes(tmp_path):
    def garage(sim):
        sim.gnss.no_fix_s = 900

    rep, rows, run = patrol(tmp_path, 18, sim_setup=garage, kill_at=(7,))
    truth = Truth(run)
    held = check_once(rep, rows, truth, restarts_at_s=(420,))
    # samples taken from boot until the modem's network time came are kept and stamped
    assert len(held) >= 4, sorted(held)
    fl = rep.flags
    for t in held:
        assert fl[t] & (TICKS | NTP) == TICKS | NTP and not fl[t] & (GPS | RTC), (t, fl[t])
    fix_t = truth.start + 900
    for t, r in rows.items():
        if t < fix_t:
            assert not fl[t] & GPS and "lat_deg" not in r, (t, fl[t])
        elif t > fix_t + 10:
            assert fl[t] & GPS and "lat_deg" in r, (t, fl[t])
    b1, b2 = statuses(rep, 1), statuses(rep, 2)
    assert b1 and b2
    assert b1[-1]["clock_first"] == "network" and b1[-1]["held_stamped"] == len(held), b1[-1]
    # the reset in the garage: the RTC had the time at once; the network's time took over
    assert b2[0]["clock_first"] == "rtc" and b2[0]["clock_first_s"] == 0, b2[0]
    assert b2[-1]["clock"] == "gnss" and b2[-1]["held_lost_at_boot"] == 0, b2[-1]
    assert not [t for t in held if t > truth.start + 7 * 60], "nothing held after the reset"
    n = by_source(fl)
    assert n["network"] > 20 and n["gnss"] > 10, n
    print(f"figures: clock after {b1[-1]['clock_first_s']} s (network), held={len(held)}, "
          f"stamped by gnss={n['gnss']} network={n['network']} rtc={n['rtc']}")
