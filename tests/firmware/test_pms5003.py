# PMS5003 driver under MicroPython, against tests/vectors/pms5003.json (shared with the simulator).
import micropython
import mptest
from envbox.firmware import wire
from envbox.firmware.drivers.pms5003 import PMS5003, CMD_PASSIVE, CMD_READ

V = mptest.vectors("pms5003")["vectors"]
NAMES = [c[0] for c in wire.CHANNELS]


class FakeUART:
    """machine.UART's read API over a preloaded byte string; readinto never allocates."""

    def __init__(self, size=512):
        self.d = bytearray(size)
        self.n = 0
        self.i = 0
        self.w = bytearray(64)
        self.wn = 0

    def load(self, data):
        for k in range(len(data)):
            self.d[k] = data[k]
        self.n = len(data)
        self.i = 0

    def any(self):
        return self.n - self.i

    def readinto(self, buf, nbytes=None):
        k = 0
        lim = len(buf) if nbytes is None else nbytes
        while self.i < self.n and k < lim:
            buf[k] = self.d[self.i]
            k += 1
            self.i += 1
        return k

    def write(self, b):
        for c in b:       # keeps the first 64 bytes written; no allocation
            if self.wn < 64:
                self.w[self.wn] = c
            self.wn += 1
        return len(b)

    def written(self):
        return bytes(self.w[:min(self.wn, 64)])


def _driver():
    u = FakeUART()
    p = PMS5003(u)
    p.start(0)
    return u, p


NOW = 60000   # past the 30 s warm-up


def test_start_enters_passive_mode_and_request_reads():
    u, p = _driver()
    mptest.eq(u.written(), CMD_PASSIVE)
    p.request(NOW)
    mptest.eq(u.written()[7:], CMD_READ)


def test_data_vectors_decode():
    n = 0
    for v in V:
        if not (v["ok"] and v.get("kind") == "data"):
            continue
        u, p = _driver()
        p.request(NOW)
        u.load(mptest.unhex(v["hex"]))
        mptest.eq(p.poll(NOW), 1, v["name"])
        mptest.eq(p.bytes_skipped, int(v.get("bytes_skipped", 0)), v["name"])
        s = wire.Sample(b"x")
        p.fill(s, NOW)
        for k in v["decoded"]:
            if k in NAMES:
                i = NAMES.index(k)
                mptest.eq(s.value[i], v["decoded"][k], v["name"] + " " + k)
                mptest.eq(s.status[i], wire.STATUS_OK, v["name"] + " " + k)
        n += 1
    mptest.true(n >= 4)


def test_acks_are_parsed_and_are_not_data():
    for v in V:
        if v["ok"] and v.get("kind") == "ack":
            u, p = _driver()
            u.load(mptest.unhex(v["hex"]))
            mptest.eq(p.poll(NOW), 0, v["name"])
            mptest.eq(p.acks, 1, v["name"])


def test_invalid_vectors_never_yield_values():
    for v in V:
        if v["ok"]:
            continue
        u, p = _driver()
        p.request(NOW)
        u.load(mptest.unhex(v["hex"]))
        mptest.eq(p.poll(NOW), 0, v["name"])
        s = wire.Sample(b"x")
        p.fill(s, NOW)
        st = s.status[wire.CH_PM25]
        want = wire.STATUS_CHECKSUM_ERROR if v["error"] == "checksum" else wire.STATUS_NO_DATA
        mptest.eq(st, want, v["name"])
        mptest.eq(s.value[wire.CH_PM25], 0, v["name"])


def test_warm_up_is_a_status_not_a_zero():
    good = [v for v in V if v["ok"] and v.get("kind") == "data"][0]
    u, p = _driver()
    p.request(1000)
    u.load(mptest.unhex(good["hex"]))
    p.poll(1000)
    s = wire.Sample(b"x")
    p.fill(s, 1000)
    mptest.eq(s.status[wire.CH_PM25], wire.STATUS_WARMING_UP)


def test_split_and_glued_frames_resync():
    frames = [mptest.unhex(v["hex"]) for v in V if v["ok"] and v.get("kind") == "data"]
    stream = b"\x42\x4d\x00" + frames[0][:11] + frames[1] + frames[2] + b"\x42" + frames[0]
    u, p = _driver()
    got = 0
    for i in range(0, len(stream), 5):
        u.load(stream[i:i + 5])
        got += p.poll(NOW)
    mptest.eq(got, 3)
    mptest.eq(p.words[1], 8)   # the last good frame is capture 1 (PM2.5 CF=1 = 8)


def test_random_bytes_never_raise():
    u, p = _driver()
    for i in range(300):
        u.load(mptest.rand_bytes(48) + b"\x42\x4d\x00\x1c" + mptest.rand_bytes(28))
        p.poll(NOW)
        p.fill(wire.Sample(b"x"), NOW)
    mptest.true(p.bytes_skipped > 0)


def test_steady_state_poll_and_fill_do_not_allocate():
    good = mptest.unhex([v for v in V if v["ok"] and v.get("kind") == "data"][4]["hex"])
    u, p = _driver()
    s = wire.Sample(b"x")
    micropython.heap_lock()
    try:
        for i in range(200):
            p.request(NOW)
            u.load(good)
            p.poll(NOW)
            p.fill(s, NOW)
    finally:
        micropython.heap_unlock()
    mptest.eq(p.frames_ok, 200)
    mptest.eq(s.status[wire.CH_PM25], wire.STATUS_OK)


mptest.main(globals())
