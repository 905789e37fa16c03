# The box's application on fakes, for tests under MicroPython (the Unix port and the 32-bit
# WebAssembly build): a board with the real drivers on scripted buses that answer like the modules
# (golden vectors), a raw flash partition that behaves like a C driver (no allocation), a clock the
# test moves, and an MQTT client that records what the uplink sends and answers as the test says.
#
# The firmware's modules are imported only when a board is made, so the heap measurement
# (tests/mp32/app_heap.py) can tell the fakes' own memory from the box's.
import asyncio
import os

from drivers_fakes import FakeI2C, FakeUART, unhex, vectors

SECTOR = 4096


def _reply(name, pick=None):
    for v in vectors(name)["vectors"]:
        if v["ok"] and (pick is None or pick in v["name"]):
            return unhex(v["hex"])
    raise ValueError(name)


class ReplyUART(FakeUART):
    """Answers every request the driver writes with a canned frame, as the module would."""

    def __init__(self, reply):
        FakeUART.__init__(self, size=256)
        self.reply = reply
        self.on_write = self._answer

    def _answer(self, b):
        self.inject(self.reply)


class ReplyI2C(FakeI2C):
    def __init__(self, addr, reply):
        FakeI2C.__init__(self, addr)
        self.reply = reply
        self.on_read = self._read

    def _read(self, buf):
        r = self.reply
        for i in range(len(buf)):
            buf[i] = r[i] if i < len(r) else 0
        return True


SERIAL_KIT = ("ze03_o3", "ze03_no2", "ze03_so2", "ze03_co", "ze08", "modbus_noise", "sds011",
              "mhz19b")


def kit_buses(kit):
    """The buses of a kit's modules, each answering like its module: "pm-gnss" (the PMS5003;
    the GNSS has its own) or "full" (the nine modules of the ESP32 LTE board)."""
    buses = {"pms5003": ReplyUART(_reply("pms5003")), "gnss": FakeUART(size=2048)}
    if kit == "full":
        ze = _reply("ze03")
        for gas in ("o3", "no2", "so2", "co"):
            buses["ze03_" + gas] = ReplyUART(ze)
        buses["ze08"] = ReplyUART(_reply("ze08"))
        buses["modbus_noise"] = ReplyUART(_reply("modbus"))
        buses["sds011"] = ReplyUART(_reply("sds011"))
        buses["mhz19b"] = ReplyUART(_reply("mhz19b"))
        buses["scd4x"] = ReplyI2C(0x62, _reply("scd4x", "worked"))
        buses["sht4x"] = ReplyI2C(0x44, _reply("sht4x"))
    return buses


def kit_drivers(buses):
    """The real drivers on those buses, in the board's order."""
    from envbox.firmware.drivers.pms5003 import PMS5003
    ds = [PMS5003(buses["pms5003"], {})]
    if "ze08" in buses:
        from envbox.firmware.drivers.mhz19b import MHZ19B
        from envbox.firmware.drivers.modbus_noise import ModbusNoise
        from envbox.firmware.drivers.scd4x import SCD4x
        from envbox.firmware.drivers.sds011 import SDS011
        from envbox.firmware.drivers.sht4x import SHT4x
        from envbox.firmware.drivers.ze03 import ZE03
        from envbox.firmware.drivers.ze08 import ZE08
        for gas in ("o3", "no2", "so2", "co"):
            ds.append(ZE03(buses["ze03_" + gas], {"gas": gas}))
        ds.append(ZE08(buses["ze08"], {}))
        ds.append(ModbusNoise(buses["modbus_noise"], {}))
        ds.append(SDS011(buses["sds011"], {}))
        ds.append(MHZ19B(buses["mhz19b"], {}))
        ds.append(SCD4x(buses["scd4x"], {"address": 0x62}))
        ds.append(SHT4x(buses["sht4x"], {"address": 0x44}))
    return ds


class RamPartition:
    """A raw flash partition as a C driver (esp32.Partition) behaves: reads and writes allocate
    nothing; programming clears bits only; ioctl 6 erases a 4 KiB block."""

    def __init__(self, nsec):
        self.b = bytearray(b"\xff" * (nsec * SECTOR))
        self.nsec = nsec
        self.programmed = 0
        self.erases = 0
        self.fail = False

    def readblocks(self, block, buf, off=0):
        a = block * SECTOR + off
        b = self.b
        for i in range(len(buf)):
            buf[i] = b[a + i]

    def writeblocks(self, block, buf, off=0):
        if self.fail:
            raise OSError(5)        # a failing flash (tests of the sampler's fallback)
        a = block * SECTOR + off
        b = self.b
        for i in range(len(buf)):
            b[a + i] &= buf[i]
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.nsec
        if op == 5:
            return SECTOR
        if op == 6:
            if self.fail:
                raise OSError(5)
            a = arg * SECTOR
            b = self.b
            for i in range(SECTOR):
                b[a + i] = 0xFF
            self.erases += 1
        return 0


class FakeLink:
    """The board's network supervisor as the uplink sees it (firmware/link.py's interface)."""

    def __init__(self):
        self.up = asyncio.Event()
        self.up.set()
        self.failed = 0
        self.ok = 0
        self.time = None            # what time_s2020() returns: (t_s2020, tick) or None

    async def run(self):
        pass

    def broker_failed(self):
        self.failed += 1

    def broker_ok(self):
        self.ok += 1

    def status_into(self, d):
        d["link"] = {"state": "up"}

    async def resolve(self, host):
        return "127.0.0.1"

    def rssi(self):
        return None

    def time_s2020(self):
        return self.time


_N = [0]


def FakeBoard(kit="pm-gnss", journal_sectors=16, state_dir=None, buses=None, partition=None):
    """A board (firmware/boardbase.py) with the kit's real drivers on scripted buses."""
    from envbox.firmware.boardbase import BoardBase
    from envbox.firmware.drivers.nmea import GNSS

    class _Board(BoardBase):
        NAME = "fake"

        def open_journal(self):
            from envbox.firmware.journal_ring import RingJournal
            return RingJournal(self.partition).open()

        def ticks_ms(self):
            self.t_ms += 1          # time passes a little every time someone looks
            return self.t_ms & ((1 << 30) - 1)

        def wall_ms(self):
            import time
            return time.ticks_ms()

        def advance(self, ms):
            self.t_ms += ms

        def log(self, msg):
            self.logs.append(msg)
            if len(self.logs) > 50:
                self.logs.pop(0)

        def wdt_feed(self):
            self.fed += 1

        def reset_cause(self):
            return "power_on"

    b = _Board()
    _N[0] += 1
    buses = buses or kit_buses(kit)
    b.device_id = b"sj-001"
    b.t_ms = (1 << 30) - 5000        # the tick counter wraps 5 s into every test
    b.gnss_uart = buses["gnss"]
    b.gnss = GNSS(b.gnss_uart)
    b.sensors = kit_drivers(buses)
    b.state_dir = state_dir or "/tmp/envbox-mptest-app-%d" % _N[0]
    b.partition = partition or RamPartition(journal_sectors)
    b.logs = []
    b.poll_ms = 1
    b.answer_timeout_ms = 1000
    b.ack_timeout_ms = 2000
    b.ack_timeout_max_ms = 8000
    b.backoff_min_ms = 10
    b.backoff_max_ms = 40
    b.io_timeout_ms = 2000
    b.keepalive_s = 60
    b.batch_max_samples = 60
    b.link = FakeLink()
    b.fed = 0
    b.insecure = True       # no credentials on the fake board: allowed to connect (and report it)
    _rmtree(b.state_dir)
    return b


def _rmtree(d):
    try:
        for n in os.listdir(d):
            p = d + "/" + n
            try:
                os.remove(p)
            except OSError:
                _rmtree(p)
        os.rmdir(d)
    except OSError:
        pass


def nmea_second(t_s2020, lat="3953.6183", lon="11628.2294"):
    """RMC + GGA of one UTC second (seconds since 2020) at a position in Shuangjing."""
    import time
    tm = time.gmtime(t_s2020 + 1577836800 - (946684800 if time.gmtime(0)[0] == 2000 else 0))
    tod = "%02d%02d%02d.00" % (tm[3], tm[4], tm[5])
    date = "%02d%02d%02d" % (tm[2], tm[1], tm[0] % 100)
    out = b""
    for body in ("GPRMC,%s,A,%s,N,%s,E,12.5,90.0,%s,,,A" % (tod, lat, lon, date),
                 "GPGGA,%s,%s,N,%s,E,1,9,0.9,45.1,M,-8.6,M,," % (tod, lat, lon)):
        c = 0
        for ch in body:
            c ^= ord(ch)
        out += ("$%s*%02X\r\n" % (body, c)).encode()
    return out


class FakeClient:
    """firmware/mqtt.py's MQTTClient as the uplink uses it. `script` decides what happens:
    puback: "now" (PUBACK at once), "never", "reverse" (PUBACKs of a publish burst in reverse
    order), "dup" (every PUBACK twice); drop_after: break the link after this many publishes."""

    def __init__(self, up, script):
        self.up = up
        self.script = script
        self.host = "127.0.0.1"
        self.server_hostname = None
        self.session_present = False
        self.on_puback = None
        self.on_message = None
        self.last_rx_ms = 0
        self.pings_outstanding = 0
        self.error = None
        self.closed = False
        self._dead = asyncio.Event()
        self._pending = []

    async def connect(self, timeout_ms=0):
        sc = self.script
        sc.connects += 1
        if sc.refuse:
            sc.refuse -= 1
            raise OSError("refused")
        self.session_present = sc.connects > 1
        sc.client = self

    async def publish(self, topic, payload, pid, qos=1, retain=False, dup=False):
        sc = self.script
        if self.closed:
            raise OSError("closed")
        if sc.record:
            sc.sent.append((bytes(topic), bytes(payload), pid, qos, retain))
        if qos and topic.endswith(b"/data"):
            sc.data_msgs += 1
            sc.publishes += 1
            if sc.drop_after and sc.publishes % sc.drop_after == 0:
                self.close()
                raise OSError("link dropped")
            mode = sc.puback
            if mode == "now":
                self.on_puback(pid)
            elif mode == "dup":
                self.on_puback(pid)
                self.on_puback(pid)
            elif mode == "reverse":
                self._pending.append(pid)
                if len(self._pending) >= 3:
                    while self._pending:
                        self.on_puback(self._pending.pop())
        await asyncio.sleep_ms(0)

    async def subscribe(self, topic, pid, qos=1):
        self.script.subs.append(bytes(topic))

    async def ping(self):
        pass

    async def read_loop(self, ticks_ms):
        await self._dead.wait()
        self.error = "closed by the test"

    def deliver(self, topic, payload, retained=False):
        self.last_rx_ms = self.up.board.wall_ms()
        self.on_message(topic, payload, retained)

    def flush_pubacks(self):
        while self._pending:
            self.on_puback(self._pending.pop())

    async def disconnect(self):
        self.close()

    def close(self):
        self.closed = True
        self._dead.set()


class Script:
    def __init__(self, puback="now", drop_after=0, refuse=0, record=True):
        self.record = record          # False: count data messages only (heap measurements)
        self.data_msgs = 0
        self.puback = puback
        self.drop_after = drop_after
        self.refuse = refuse
        self.connects = 0
        self.publishes = 0
        self.sent = []
        self.subs = []
        self.client = None

    def factory(self, up):
        return FakeClient(up, self)

    def data_seqs(self):
        """Every seq sent on the data topic, in order (batches expanded)."""
        from envbox.firmware import wire
        out = []
        for topic, payload, pid, qos, retain in self.sent:
            if topic.endswith(b"/data"):
                for d in wire.decode_many(payload):
                    out.append(d["seq"])
        return out
