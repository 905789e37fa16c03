# The uplink alone (firmware/uplink.py), under MicroPython, with the real app, sampler and
# journal on fakes (tests/firmware/appfakes.py) and a scripted MQTT client: PUBACKs in any order or
# twice or never, a link dropped mid-batch, a gateway that acknowledges late, partly or never, a
# full journal, malformed acknowledgements. No broker: the tests with mosquitto and the gateway
# are tests/test_firmware_resilience.py and tests/test_chaos.py.
import asyncio

import mptest
from appfakes import FakeBoard, Script, nmea_second
from envbox.firmware import app as A
from envbox.firmware import wire
from envbox.firmware.clock import SOURCE_GNSS

T0 = 218000000      # seconds since 2020: 2026-11-28


def _app(script, kit="pm-gnss", sectors=16):
    b = FakeBoard(kit, journal_sectors=sectors)
    a = A.App(b, client_factory=script.factory)
    a.clock.set(T0, b.ticks_ms(), SOURCE_GNSS)
    a.io = asyncio.create_task(a.sampler.io_task())     # polls the buses, as on the box
    return a


async def _sample(a, k):
    """Take the sample of grid slot k (T0 + 10 k) as the sampler would."""
    t = T0 + 10 * k
    a.board.gnss_uart.inject(nmea_second(t))
    await a.sampler._take(t)


class Gateway:
    """Acknowledges what the box sent, like the gateway after its spool commit; `hold` holds
    some seqs back (a broker that lost them)."""

    def __init__(self, a, script):
        self.a = a
        self.script = script
        self.lost = set()
        self.held = set()

    def ack(self, extra=None):
        c = self.script.client
        if c is None or c.closed:
            return
        for s in self.script.data_seqs():
            if s not in self.lost:
                self.held.add(s)
        ranges = []
        for s in sorted(self.held):
            if ranges and s == ranges[-1][1]:
                ranges[-1][1] = s + 1
            else:
                ranges.append([s, s + 1])
        c.deliver(b"envbox/v1/sj-001/ack/gw1", wire.encode_ack(ranges[-16:]), True)


async def _until(cond, what, limit_ms=4000):
    for _ in range(limit_ms // 5):
        if cond():
            return
        await asyncio.sleep_ms(5)
    raise mptest.Fail("timed out waiting for " + what)


async def test_live_samples_go_out_in_order_and_acks_release_them():
    sc = Script()
    a = _app(sc)
    gw = Gateway(a, sc)
    up = asyncio.create_task(a.uplink.run())
    for k in range(12):
        await _sample(a, k)
        await asyncio.sleep_ms(20)
        if k % 4 == 3:
            gw.ack()
    await _until(lambda: len(sc.data_seqs()) >= 12, "12 sends")
    gw.ack()
    await _until(lambda: a.journal.depth() == 0, "every sample acknowledged")
    mptest.eq(sc.data_seqs(), list(range(12)))
    mptest.eq(a.journal.released, 12)
    mptest.true(b"envbox/v1/sj-001/ack/+" in sc.subs, "subscribed to the gateways' acks")
    mptest.eq(a.uplink.resends, 0)
    up.cancel()


async def test_puback_alone_releases_nothing_and_order_does_not_matter():
    for mode in ("reverse", "dup", "now"):
        sc = Script(puback=mode)
        a = _app(sc)
        up = asyncio.create_task(a.uplink.run())
        for k in range(9):
            await _sample(a, k)
            await asyncio.sleep_ms(5)
        await _until(lambda: len(sc.data_seqs()) >= 9, "sends (%s)" % mode)
        if mode == "reverse":
            sc.client.flush_pubacks()
        await asyncio.sleep_ms(50)
        mptest.eq(a.journal.released, 0, mode + ": the broker's PUBACK does not release")
        mptest.eq(a.journal.depth(), 9, mode)
        mptest.true(a.uplink._free_slot(0) >= 0, mode + ": slots freed by PUBACKs")
        up.cancel()


async def test_no_puback_stops_at_the_inflight_window():
    sc = Script(puback="never")
    a = _app(sc)
    a.board.max_inflight = 4
    a.uplink.if_used = bytearray(4)
    up = asyncio.create_task(a.uplink.run())
    for k in range(10):
        await _sample(a, k)
        await asyncio.sleep_ms(5)
    await asyncio.sleep_ms(50)
    mptest.eq(len(sc.data_seqs()), 4, "at most max_inflight messages without PUBACK")
    up.cancel()


async def test_link_dropped_mid_catchup_resends_newest_first_then_the_rest():
    sc = Script(drop_after=3)
    a = _app(sc)
    gw = Gateway(a, sc)
    # 80 samples journaled while offline: the uplink starts with a backlog
    for k in range(80):
        await _sample(a, k)
    up = asyncio.create_task(a.uplink.run())
    await _until(lambda: sc.connects >= 3, "reconnects after drops")
    sc.drop_after = 0
    await _until(lambda: set(range(80)) <= set(sc.data_seqs()), "every sample sent")
    # (acknowledge again until it lands: the link may be between two sessions)
    await _until(lambda: gw.ack() or a.journal.depth() == 0, "all acknowledged")
    # after each (re)connect the first data message is the newest sample, alone
    firsts = []
    seen_connects = 0
    for topic, payload, pid, qos, retain in sc.sent:
        if topic.endswith(b"/status") and payload == b"online":
            seen_connects += 1
            firsts.append(None)
        elif topic.endswith(b"/data") and firsts and firsts[-1] is None:
            firsts[-1] = payload
    for p in firsts:
        if p is not None:
            mptest.eq(p[0], wire.KIND_SAMPLE)
            mptest.eq(wire.decode(p)["seq"], 79)
    mptest.true(a.uplink.batches >= 2, "the backlog went in batches")
    up.cancel()


async def test_a_gateway_that_does_not_acknowledge_gets_everything_again_less_often():
    sc = Script()
    a = _app(sc)
    a.board.ack_timeout_ms = 60
    a.uplink._ack_wait_ms = 60
    a.board.ack_timeout_max_ms = 240
    up = asyncio.create_task(a.uplink.run())
    for k in range(5):
        await _sample(a, k)
    await _until(lambda: a.uplink.resends >= 3, "resends without acknowledgements", 3000)
    mptest.eq(a.uplink._ack_wait_ms, 240, "the wait doubled up to its cap")
    mptest.true(sc.data_seqs().count(4) >= 3, "sent again")
    gw = Gateway(a, sc)
    gw.ack()
    await _until(lambda: a.journal.depth() == 0, "acknowledged at last")
    mptest.eq(a.uplink._ack_wait_ms, 60, "back to the short wait after progress")
    up.cancel()


async def test_a_hole_in_the_acknowledgements_is_filled_by_resending_only_it():
    sc = Script()
    a = _app(sc)
    a.board.ack_timeout_ms = 80
    a.uplink._ack_wait_ms = 80
    gw = Gateway(a, sc)
    gw.lost = {3, 4}                 # the broker lost these two on the way to the gateway
    up = asyncio.create_task(a.uplink.run())
    for k in range(10):
        await _sample(a, k)
        await asyncio.sleep_ms(5)
    await _until(lambda: len(sc.data_seqs()) >= 10, "sends")
    gw.ack()
    await asyncio.sleep_ms(20)
    mptest.eq(a.journal.released, 3)
    mptest.eq(a.journal.depth(), 2, "only the hole is unacknowledged")
    n = len(sc.data_seqs())
    gw.lost = set()
    await _until(lambda: {3, 4} <= set(sc.data_seqs()[n:]), "the resend", 3000)
    await asyncio.sleep_ms(30)
    again = sc.data_seqs()[n:]
    mptest.eq(sorted(set(again)), [3, 4], "only the unacknowledged seqs are sent again")
    gw.ack()
    await _until(lambda: a.journal.depth() == 0, "the hole acknowledged")
    up.cancel()


async def test_a_full_journal_drops_the_oldest_and_sends_the_rest_contiguously():
    sc = Script()
    a = _app(sc, sectors=3)            # about 150 records of the PMS5003+GNSS kit
    for k in range(250):
        await _sample(a, k)
    j = a.journal
    mptest.true(j.dropped > 0, "dropped when full")
    mptest.eq(j.released, j.dropped)
    gw = Gateway(a, sc)
    up = asyncio.create_task(a.uplink.run())
    await _until(lambda: set(range(j.dropped, 250)) <= set(sc.data_seqs()), "the rest sent")
    gw.ack()
    await _until(lambda: j.depth() == 0, "acknowledged")
    mptest.eq(min(sc.data_seqs()), j.dropped, "nothing below the dropped ones")
    up.cancel()


async def test_malformed_acknowledgements_are_counted_and_ignored():
    sc = Script()
    a = _app(sc)
    up = asyncio.create_task(a.uplink.run())
    for k in range(3):
        await _sample(a, k)
    await _until(lambda: len(sc.data_seqs()) >= 3, "sends")
    c = sc.client
    for bad in (b"", b"\x03", b"\x03\x01\xff\xff\xff\xff\x0f\x00", b"\x01\x02", None,
                b"\x03\x01" + b"\x80" * 40):
        c.deliver(b"envbox/v1/sj-001/ack/gw1", bad)
    mptest.eq(a.uplink.acks_bad, 6)
    mptest.eq(a.journal.released, 0)
    c.deliver(b"envbox/v1/sj-001/ack/gw1", wire.encode_ack([(0, 3)]))
    mptest.eq(a.journal.released, 3)
    up.cancel()


async def test_a_failing_flash_still_sends_live_and_keeps_sampling():
    sc = Script()
    a = _app(sc)
    gw = Gateway(a, sc)
    up = asyncio.create_task(a.uplink.run())
    for k in range(3):
        await _sample(a, k)
    a.board.partition.fail = True           # the flash stops taking writes
    fed = a.board.fed
    for k in range(3, 6):
        await _sample(a, k)
        await asyncio.sleep_ms(30)          # the uplink sends each from RAM before the next
    mptest.eq(a.sampler.journal_failures, 3)
    mptest.true(a.board.fed >= fed + 3, "the watchdog is still fed: no reboot loop")
    await _until(lambda: set(range(6)) <= set(sc.data_seqs()), "every sample sent")
    await _until(lambda: gw.ack() or a.journal.depth() == 0, "the journaled ones acknowledged")
    mptest.eq(a.uplink.resends, 0, "no resend loop over samples that are not on flash")
    mptest.eq(a.uplink.unjournaled_sent, 3)
    up.cancel()


async def test_status_reports_the_unacknowledged_depth_and_age():
    import json
    sc = Script()
    a = _app(sc)
    for k in range(6):
        await _sample(a, k)
    a.clock.set(T0 + 100, a.board.ticks_ms(), SOURCE_GNSS)
    d = json.loads(a.status_json())
    mptest.eq(d["journal_depth"], 6)
    mptest.eq(d["journal_oldest_unacked_age_s"], 100)
    mptest.eq(d["link"]["state"], "up")
    mptest.eq(d["journal_store"], "RingJournal")


mptest.main(globals())
