# firmware/drivers/sht4x.py and sht3x.py under MicroPython: golden vectors, NACK handling,
# fuzz, no allocation.
import micropython
import mptest
from mptest import eq, true
from drivers_fakes import FakeI2C, LCG, vectors, unhex
from envbox.firmware import wire
from envbox.firmware.drivers.sht4x import SHT4x
from envbox.firmware.drivers.sht3x import SHT3x

V4 = vectors("sht4x")
V3 = vectors("sht3x")


class Dev:
    """A scripted SHT: answers `reply` to reads made >= conv_ms after the measure command."""

    def __init__(self, i2c, reply, conv_ms):
        self.i2c = i2c
        self.reply = bytearray(reply)
        self.conv_ms = conv_ms
        self.now = 0
        self.cmd_t = -1
        i2c.on_write = self.on_write
        i2c.on_read = self.on_read

    def on_write(self, b):
        self.cmd_t = self.now

    def on_read(self, buf):
        if self.cmd_t < 0 or self.now - self.cmd_t < self.conv_ms:
            return False                        # still converting: NACK
        for i in range(len(buf)):
            buf[i] = self.reply[i]
        self.cmd_t = -1
        return True


def run(drv, dev, t0):
    dev.now = t0
    drv.request(t0)
    t = t0
    while not drv.ready() and t < t0 + 200:
        t += 1
        dev.now = t
        drv.poll(t)
    s = wire.Sample(b"t")
    drv.fill(s, t)
    return s


def check_vectors(cls, V, cmd_key):
    for v in V["vectors"]:
        i2c = FakeI2C(0x44)
        dev = Dev(i2c, unhex(v["hex"]), 20)    # slower than the datasheet time: retried
        d = cls(i2c, {})
        d.start(0)
        s = run(d, dev, 100)
        eq(bytes(i2c.last[:i2c.nlast]), unhex(V["commands"][cmd_key]), v["name"])
        if not v["ok"]:
            eq(s.status[wire.CH_TEMP], wire.STATUS_CHECKSUM_ERROR, v["name"])
            eq(d.checksum_errors, 1)
            continue
        eq(s.status[wire.CH_TEMP], wire.STATUS_OK, v["name"])
        eq(s.value[wire.CH_TEMP], int(v["decoded"]["temp_c"] * 100 + 0.5), v["name"])
        eq(s.value[wire.CH_RH], int(v["decoded"]["rh_pct"] * 100 + 0.5), v["name"])
        true(i2c.nacks >= 1, "reads before the conversion time are NACKed and retried")


def test_sht4x_vectors():
    check_vectors(SHT4x, V4, "measure_high_precision")


def test_sht3x_vectors():
    check_vectors(SHT3x, V3, "measure_single_shot_high")


def test_rh_is_cropped_and_extremes():
    # S_RH = 0xFFFF -> 119 %, cropped to 100; S_RH = 0 -> -6 %, cropped to 0; T extremes
    from envbox.firmware.drivers.checksums import sensirion_crc8
    for st, srh, t_cc, rh_cp, t_status in ((0xFFFF, 0xFFFF, 13000, 10000, wire.STATUS_OUT_OF_RANGE),
                                            (0, 0, -4500, 0, wire.STATUS_OUT_OF_RANGE),
                                            (0x6666, 0x8000, 2500, 5650, wire.STATUS_OK)):
        b = bytearray((st >> 8, st & 0xFF, 0, srh >> 8, srh & 0xFF, 0))
        b[2] = sensirion_crc8(b, 0, 2)
        b[5] = sensirion_crc8(b, 3, 5)
        i2c = FakeI2C(0x44)
        dev = Dev(i2c, b, 9)
        d = SHT4x(i2c, {})
        s = run(d, dev, 0)
        eq((s.status[wire.CH_TEMP], s.value[wire.CH_TEMP]), (t_status, t_cc))
        eq(s.value[wire.CH_RH], rh_cp)


def test_missing_sensor_is_no_data_never_raises():
    for cls in (SHT4x, SHT3x):
        i2c = FakeI2C(0x45)                     # nothing answers at 0x44
        d = cls(i2c, {})
        d.start(0)
        s = run(d, Dev(FakeI2C(0x45), b"", 9), 10)
        eq(s.status[wire.CH_TEMP], wire.STATUS_NO_DATA)
        eq(s.status[wire.CH_RH], wire.STATUS_NO_DATA)
        eq(d.timeouts, 1)


def test_sensor_that_never_finishes_times_out():
    i2c = FakeI2C(0x44)
    dev = Dev(i2c, b"\x00" * 6, 100000)
    d = SHT3x(i2c, {"timeout_ms": 50})
    s = run(d, dev, 0)
    eq(s.status[wire.CH_TEMP], wire.STATUS_NO_DATA)
    eq(d.timeouts, 1)


def test_random_replies_never_raise():
    r = LCG(21)
    for n in range(200):
        i2c = FakeI2C(0x44)
        dev = Dev(i2c, bytes(r.byte() for _ in range(6)), r.below(20))
        d = (SHT4x, SHT3x)[n % 2](i2c, {})
        s = run(d, dev, 0)
        true(s.status[wire.CH_TEMP] in (wire.STATUS_OK, wire.STATUS_OUT_OF_RANGE, wire.STATUS_CHECKSUM_ERROR,
                                         wire.STATUS_NO_DATA))


def test_steady_state_allocates_nothing():
    for cls, V in ((SHT4x, V4), (SHT3x, V3)):
        i2c = FakeI2C(0x44)
        dev = Dev(i2c, unhex(V["vectors"][0]["hex"]), 9)
        d = cls(i2c, {})
        s = wire.Sample(b"t")
        want = int(V["vectors"][0]["decoded"]["temp_c"] * 100 + 0.5)
        ok = [0]
        now = 0
        micropython.heap_lock()
        try:
            for i in range(300):
                dev.now = now
                d.request(now)
                for k in (5, 10, 17):
                    dev.now = now + k
                    d.poll(now + k)
                d.fill(s, now + 20)
                if s.status[wire.CH_TEMP] == wire.STATUS_OK and s.value[wire.CH_TEMP] == want:
                    ok[0] += 1
                now += 10000
        finally:
            micropython.heap_unlock()
        eq(ok[0], 300)


mptest.main(globals())
