# firmware/drivers/simcom.py under MicroPython: the golden AT exchanges (tests/vectors/simcom.json,
# which the simulator's model reproduces in tests/test_models_simcom.py), answers split across
# reads, URCs between the lines, time-outs on the board clock, +++ escape, parsers on odd text.
# The tests are coroutines (mptest runs them on asyncio; the 32-bit build has no asyncio.run).
import mptest
from mptest import eq, true
from drivers_fakes import FakeUART
from envbox.firmware.drivers import simcom
from envbox.firmware.link import LinkClock

V = mptest.vectors("simcom")
RC = {"OK": simcom.RC_OK, "ERROR": simcom.RC_ERROR, "CME ERROR": simcom.RC_CME,
      "CONNECT": simcom.RC_CONNECT, "NO CARRIER": simcom.RC_NO_CARRIER}


class Ticks:
    """A board clock the test moves: every read advances it by `step` ms."""

    def __init__(self, step=5):
        self.t = 0
        self.step = step

    def __call__(self):
        self.t += self.step
        return self.t & 0x3FFFFFFF


def make(answer=None, chunk=1024, step=5):
    u = FakeUART(size=2048, chunk=chunk)
    tk = Ticks(step)
    clock = LinkClock(tk, tk, 1.0, 0, 0)
    m = simcom.SIMCom(u, {}, clock, "sim7600")
    if answer is not None:
        def reply(buf):
            if bytes(buf).endswith(b"\r"):
                u.inject(answer)
        u.on_write = reply
    return m, u, tk


async def test_exchanges_decode_as_the_vectors_say():
    for ex in V["exchanges"]:
        m, u, _ = make(ex["answer"].encode(), chunk=7)     # answers arrive in 7-byte reads
        cmd = ex["command"].encode()
        rc = await m.cmd(cmd, 1000)
        eq(rc, RC[ex["rc"]], ex["name"])
        eq(bytes(u.tx[:u.ntx]) if u.ntx <= len(u.tx) else None, cmd + b"\r", ex["name"])
        if "cme" in ex:
            eq(m.cme, ex["cme"], ex["name"])
        d = ex.get("decoded", {})
        if "csq" in d:
            eq(simcom.parse_csq(m.info(b"+CSQ: ")), (d["csq"], d["rssi_dbm"]), ex["name"])
        if "reg" in d:
            v = m.info(b"+CEREG: ") or m.info(b"+CREG: ")
            eq(simcom.parse_reg(v), d["reg"], ex["name"])
        if "iccid" in d:
            eq(simcom.parse_iccid(m.info(b"+ICCID: ")), d["iccid"], ex["name"])
        if "t_s2020" in d:
            eq(simcom.parse_cclk(m.info(b"+CCLK: ")), d["t_s2020"], ex["name"])


async def test_queries_decode_as_the_vectors_say():
    by_cmd = {}
    for ex in V["exchanges"]:
        by_cmd.setdefault(ex["command"], []).append(ex)
    for ex in by_cmd["AT+CPIN?"]:
        m, u, _ = make(ex["answer"].encode())
        eq((await m.sim()), ex["decoded"]["sim"], ex["name"])
    for ex in by_cmd["AT+CSQ"]:
        m, u, _ = make(ex["answer"].encode())
        eq((await m.csq()), (ex["decoded"]["csq"], ex["decoded"]["rssi_dbm"]), ex["name"])
    for ex in by_cmd["AT+CCLK?"]:
        m, u, _ = make(ex["answer"].encode())
        eq((await m.network_time()), ex["decoded"]["t_s2020"], ex["name"])
    for ex in by_cmd["AT+CICCID"]:
        m, u, _ = make(ex["answer"].encode())
        eq((await m.iccid()), ex["decoded"]["iccid"], ex["name"])


async def test_urcs_and_echo_around_the_answer_are_ignored():
    m, u, _ = make(b"AT+CSQ\r\r\n+CEREG: 1\r\n\r\nSMS DONE\r\n\r\n+CSQ: 17,99\r\n\r\nOK\r\n")
    eq((await m.csq()), (17, -79))


async def test_no_answer_times_out_on_the_board_clock():
    m, u, tk = make(None, step=10)
    t0 = tk.t
    eq((await m.cmd(b"AT", 500)), simcom.RC_TIMEOUT)
    true(500 <= tk.t - t0 < 1000, tk.t - t0)
    eq(m.timeouts, 1)


async def test_escape_waits_the_guard_times_and_needs_ok():
    m, u, tk = make(None, step=20)
    writes = []

    def on_write(buf):
        writes.append((tk.t, bytes(buf)))
        if bytes(buf) == b"+++":
            u.inject(b"\r\nOK\r\n")
    u.on_write = on_write
    t0 = tk.t
    true(await m.escape())
    eq(writes[0][1], b"+++")
    true(writes[0][0] - t0 >= simcom.GUARD_MS)          # silence before
    true(tk.t - writes[0][0] >= simcom.GUARD_MS)        # and after
    m2, u2, _ = make(None)
    true(not (await m2.escape()))
    eq(m2.escapes_failed, 1)


def test_parsers_refuse_odd_text():
    eq(simcom.parse_csq(b"x"), (None, None))
    eq(simcom.parse_csq(b"45,0"), (45, None))
    eq(simcom.parse_reg(b"0,"), None)
    eq(simcom.parse_iccid(b"12AB"), None)
    for bad in (b'"24/13/01,00:00:00+00"', b'"24/05/18 10:40:00"', b'""', b'"99/01/01,00:00:00+00"',
                b'"70/01/01,00:00:05+00"'):
        eq(simcom.parse_cclk(bad), None, bad)
    # a negative time zone: local 2024-05-18 01:00 at UTC-4 is 05:00 UTC
    eq(simcom.parse_cclk(b'"24/05/18,01:00:00-16"'), simcom.parse_cclk(b'"24/05/18,05:00:00+00"'))


async def test_overlong_answer_keeps_the_final_code():
    m, u, _ = make(b"\r\n" + b"+X: " + b"y" * 700 + b"\r\n\r\nOK\r\n", chunk=64)
    eq((await m.cmd(b"AT+X", 1000)), simcom.RC_OK)
    true(m.overflows >= 1)


mptest.main(globals())
