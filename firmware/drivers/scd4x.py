# Sensirion SCD40/SCD41 photoacoustic CO2 sensor on I2C 0x62. Protocol page: docs/sensors/scd4x.md
# (command codes and execution times from Sensirion embedded-i2c-scd4x); replies are Sensirion
# words (firmware/drivers/sensirion.py).
#   stop_periodic_measurement 3F 86 (500 ms), start_periodic_measurement 21 B1 (data every 5 s),
#   get_data_ready_status E4 B8 (1 ms, ready <=> word & 0x07FF != 0: the upper 5 bits are not
#   part of the flag, several public drivers get this wrong), read_measurement EC 05 (1 ms,
#   9 bytes: CO2 ppm, T, RH words each + CRC-8), set_ambient_pressure E0 00 + hPa word + CRC.
# Every step is non-blocking: request() starts a small state machine that poll() advances once
# each command's execution time has passed.
# start(): stop (the sensor keeps measuring across a firmware restart and ignores most commands
# then), wait 500 ms, start periodic measurement. First data 5 s later (warm-up).
# If 3 samples in a row (at least 3 measurement periods) get no new data, the measurement is
# restarted (the card's advice for "SCD41 periodically stops reporting"); counted in restarts.
# Counting missed samples rather than time keeps a box that is not sampling yet (no GNSS time)
# from restarting the sensor.
# CO2 = 0 is an invalid sample (sensor_error); above 40000 ppm out_of_range.
# cfg: {"address": 0x62, "temp_rh": False (True: also fill CH_TEMP/CH_RH from the SCD4x; the
#       default board takes them from the SHT4x because the SCD4x's own T/RH are self-heated),
#       "pressure_hpa": None|int (sent once after start; ambient pressure compensation),
#       "timeout_ms": 1000}

from ..compat import const, ticks_add, ticks_diff
from .. import wire
from . import checksums
from . import sensirion
from .frames import GOOD, SEEN_GOOD, status
from .sensirion import rh_centi_pct, temp_centi_c, word, words_verdict

CMD_START_PERIODIC = b"\x21\xb1"
CMD_STOP_PERIODIC = b"\x3f\x86"
CMD_DATA_READY = b"\xe4\xb8"
CMD_READ_MEASUREMENT = b"\xec\x05"

_IDLE = const(0)
_STOPPING = const(1)
_RUNNING = const(2)

# request sub-steps
_S_NONE = const(0)
_S_READY_CMD = const(1)      # write E4 B8 when due
_S_READY_READ = const(2)     # read 3 bytes when due
_S_MEAS_READ = const(3)      # read 9 bytes when due

_STOP_MS = const(500)
_EXEC_MS = const(1)
_PERIOD_MS = const(5000)
_RETRY_MS = const(100)
_FIRST_DATA_MS = const(5000)
_CO2_MAX_PPM = const(40000)
_MAX_MISSES = const(3)       # samples in a row with no new data (>= 3 periods): restart


def set_pressure_command(hpa):
    """E0 00 + word + CRC (allocates; sent once)."""
    b = bytearray(5)
    b[0] = 0xE0
    b[1] = 0x00
    b[2] = (hpa >> 8) & 0xFF
    b[3] = hpa & 0xFF
    b[4] = checksums.sensirion_crc8(b, 2, 4)
    return bytes(b)


class SCD4x:
    """Sensirion SCD4x: co2_ppm into CH_CO2 (and temp_c x100 / rh_pct x100 if cfg temp_rh)."""

    WARMUP_MS = _STOP_MS + _FIRST_DATA_MS

    def __init__(self, i2c, cfg=None):
        cfg = cfg or {}
        self._i2c = i2c
        self.address = cfg.get("address", 0x62)
        self.temp_rh = bool(cfg.get("temp_rh", False))
        self.CHANNELS = ((wire.CH_CO2, wire.CH_TEMP, wire.CH_RH) if self.temp_rh
                         else (wire.CH_CO2,))
        p = cfg.get("pressure_hpa")
        self._pressure_cmd = set_pressure_command(p) if p else None
        self.timeout_ms = cfg.get("timeout_ms", 1000)
        self._b3 = bytearray(3)
        self._b9 = bytearray(9)
        self.co2_ppm = 0
        self.temp_cc = 0
        self.rh_cp = 0
        self._state = _IDLE
        self._state_t = 0
        self._run_t = 0
        self._last_data_t = 0
        self._misses = 0             # samples in a row without data while measuring
        self._step = _S_NONE
        self._step_t = 0
        self._req_t = 0
        self.seen = 0                # frames.SEEN_* bits of the answers since the request
        self.frames_ok = self.checksum_errors = self.bytes_skipped = self.timeouts = 0
        self.nacks = self.not_ready = self.restarts = 0
        self.start_retries = 0       # start_periodic_measurement NACKed and sent again

    # -- contract -------------------------------------------------------------------------------
    def start(self, now_ms):
        self._write(CMD_STOP_PERIODIC)
        self._state = _STOPPING
        self._state_t = now_ms
        self._step = _S_NONE

    def request(self, now_ms):
        if self._state == _IDLE:
            self.start(now_ms)
        self.seen = 0
        self._req_t = now_ms
        self._step = _S_READY_CMD
        self._step_t = now_ms
        self.poll(now_ms)

    def ready(self):
        return self.seen != 0 or self._step == _S_NONE

    def poll(self, now_ms):
        st = self._state
        if st == _STOPPING:
            if ticks_diff(now_ms, self._state_t) >= _STOP_MS:
                # the sensor NACKs everything until its 500 ms stop has run its course (by its
                # own clock, which the bus latency puts a little behind ours): a NACKed start is
                # tried again every 100 ms instead of being taken for a running sensor (that
                # cost three samples of no_data after every restart of the box)
                if not self._write(CMD_START_PERIODIC):
                    self.start_retries += 1
                    self._state_t = ticks_add(now_ms, _RETRY_MS - _STOP_MS)
                    return 0
                if self._pressure_cmd is not None:
                    self._write(self._pressure_cmd)
                self._state = _RUNNING
                self._run_t = now_ms
                self._last_data_t = now_ms
            return 0
        if st != _RUNNING:
            return 0
        if self._misses >= _MAX_MISSES:
            self._misses = 0
            self.restarts += 1
            self.start(now_ms)
            return 0
        step = self._step
        if step == _S_NONE:
            return 0
        if ticks_diff(now_ms, self._req_t) > self.timeout_ms:
            self._step = _S_NONE
            self.timeouts += 1
            return 0
        if ticks_diff(now_ms, self._step_t) < 0:
            return 0
        if step == _S_READY_CMD:
            if self._write(CMD_DATA_READY):
                self._next(_S_READY_READ, now_ms, _EXEC_MS)
            else:
                self._next(_S_READY_CMD, now_ms, _RETRY_MS)
        elif step == _S_READY_READ:
            if not self._read(self._b3):
                self._next(_S_READY_CMD, now_ms, _RETRY_MS)
            elif words_verdict(self._b3, 3) != GOOD:
                self.checksum_errors += 1
                self._next(_S_READY_CMD, now_ms, _RETRY_MS)
            elif word(self._b3, 0) & 0x07FF:
                if self._write(CMD_READ_MEASUREMENT):
                    self._next(_S_MEAS_READ, now_ms, _EXEC_MS)
                else:
                    self._next(_S_READY_CMD, now_ms, _RETRY_MS)
            else:
                self.not_ready += 1
                self._next(_S_READY_CMD, now_ms, _RETRY_MS)
        elif step == _S_MEAS_READ:
            if not self._read(self._b9):
                self._next(_S_READY_CMD, now_ms, _RETRY_MS)
                return 0
            self._step = _S_NONE
            b = self._b9
            if not sensirion.take(self, b, 9):
                return 0
            self.co2_ppm = word(b, 0)
            self.temp_cc = temp_centi_c(word(b, 1))
            self.rh_cp = rh_centi_pct(word(b, 2))
            self._last_data_t = now_ms
            self._misses = 0
            self.seen |= SEEN_GOOD
            return 1
        return 0

    def fill(self, sample, now_ms):
        if self._step != _S_NONE:
            self._step = _S_NONE
            self.timeouts += 1
        st = status(self.seen, self._state != _RUNNING
                    or ticks_diff(now_ms, self._run_t) < _FIRST_DATA_MS)
        if st == wire.STATUS_OK:
            c = self.co2_ppm
            if c == 0:
                st = wire.STATUS_SENSOR_ERROR       # CO2 = 0 is an invalid sample
            elif c > _CO2_MAX_PPM:
                st = wire.STATUS_OUT_OF_RANGE
            sample.set(wire.CH_CO2, st, c)
            if self.temp_rh:
                sample.set(wire.CH_TEMP, wire.STATUS_OK, self.temp_cc)
                sample.set(wire.CH_RH, wire.STATUS_OK, self.rh_cp)
            return
        if st == wire.STATUS_NO_DATA:
            self._misses += 1
        sample.set(wire.CH_CO2, st)
        if self.temp_rh:
            sample.set(wire.CH_TEMP, st)
            sample.set(wire.CH_RH, st)

    # -- bus ------------------------------------------------------------------------------------
    def _next(self, step, now_ms, wait_ms):
        self._step = step
        self._step_t = ticks_add(now_ms, wait_ms)

    def _write(self, cmd):
        try:
            self._i2c.writeto(self.address, cmd)
            return True
        except Exception:
            self.nacks += 1
            return False

    def _read(self, buf):
        try:
            self._i2c.readfrom_into(self.address, buf)
            return True
        except Exception:
            self.nacks += 1
            return False
