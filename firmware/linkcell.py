# The LTE link: a SIMCom modem (firmware/drivers/simcom.py) dialled into PPP, supervised
# (docs/firmware.md, "Link").
#
# The supervisor task brings the link up and keeps it up:
#
#   modem       get an AT answer: plain AT; else the modem may still be in PPP data mode from
#               before a reset of the box (SIMCom modems stay there): '+++' with guard times,
#               then ATH; else power: the PWRKEY power-on pulse and the boot wait, then a power
#               cycle (long PWRKEY press watching STATUS, or RESET on boards without STATUS)
#   sim         AT+CPIN? until READY (entering the configured PIN), ICCID
#   registering +CEREG?/+CREG? until home or roaming, with the signal (CSQ); network time (CCLK)
#   dialing     APN, attach, ATD*99# -> CONNECT
#   ppp         network.PPP on the modem's UART until it has an address -> up
#   up          watched every second: PPP still connected (a NO CARRIER from the modem ends it),
#               STATUS still high, DCD where wired, and not too many broker failures in a row
#
# Every step has a time-out (board clock); a failed step or a lost link goes back to `modem`
# after a backoff (doubling, with jitter); every third failed bring-up starts with a power cycle,
# so a modem that needs a restart (a wedged firmware) gets one, and so does every bring-up after
# the SIM was missing (a modem reads the SIM when it starts).

import asyncio
import os

from .drivers import simcom
from .drivers.simcom import RC_CONNECT, RC_NAMES, REG_NAMES
from .link import Link, STATE_DOWN


class CellLink(Link):
    """`uart`: the modem's UART (machine.UART on a device, a pty on the sim board); `pins`: dict
    (see firmware/drivers/simcom.py); `ppp_factory(uart)`: network.PPP on a device; `cfg`: apn,
    apn_user, apn_password, sim_pin."""

    NAME = "lte"
    ALWAYS_UP = False
    # time-outs and backoff (board clock ms)
    boot_timeout_ms = 30000        # power-on pulse to the first OK (SIM7600: ~15 s)
    sim_timeout_ms = 20000
    reg_timeout_ms = 180000        # registration can take minutes at the edge of coverage
    reg_poll_ms = 3000
    attach_timeout_ms = 30000
    ppp_timeout_ms = 30000
    watch_ms = 1000
    backoff_min_ms = 5000
    backoff_max_ms = 120000
    power_cycle_every = 3          # every third failed bring-up starts with a power cycle

    def __init__(self, board, uart, pins, ppp_factory, cfg=None, variant="sim7600",
                 reset_active=1, min_wall_ms=0):
        Link.__init__(self, board, min_wall_ms)
        cfg = cfg or {}
        self.uart = uart
        self.ppp_factory = ppp_factory
        self.apn = cfg.get("apn", "")
        self.apn_user = cfg.get("apn_user")
        self.apn_password = cfg.get("apn_password", "")
        self.sim_pin = cfg.get("sim_pin")
        self.modem = simcom.SIMCom(uart, pins, self.clock, variant, reset_active)
        self.ppp = None
        self.variant = variant
        # what the status message shows
        self.sim = None              # "ready", "absent", "pin", ...
        self.iccid = None
        self.csq = None              # rssi code 0..31, 99
        self.rssi_dbm = None
        self.reg = None              # <stat>
        self.escapes = 0             # data mode left over from before a reset, escaped
        self.power_cycles = 0
        self.failures = 0            # consecutive failed bring-ups
        self.step = None             # the bring-up step running or last failed

    # ---- the supervisor
    async def run(self):
        self.modem.init_pins()
        while True:
            why = None
            try:
                why = await self._bring_up()
            except Exception as e:  # noqa: BLE001 - a bug or an odd answer must not end the link
                why = "%s: %r" % (self.step, e)
            if why is None:
                self.failures = 0
                self._set_up()
                self._log("up (%s, csq %s, %s)" % (self.variant, self.csq,
                                                    REG_NAMES[self.reg] if self.reg is not None
                                                    and 0 <= self.reg < 6 else self.reg))
                try:
                    why = await self._watch()
                except Exception as e:  # noqa: BLE001
                    why = "watch: %r" % (e,)
                self._set_down(STATE_DOWN, why)
                await self._take_down()
            else:
                self.failures += 1
                self._set_down(STATE_DOWN, why)
            await self._backoff()

    async def _backoff(self):
        n = self.failures if self.failures < 8 else 8
        ms = self.backoff_min_ms << (n - 1 if n > 0 else 0)
        if ms > self.backoff_max_ms:
            ms = self.backoff_max_ms
        ms = ms // 2 + os.urandom(1)[0] * ms // 512
        self.state = "backoff"
        await self.clock.sleep(ms)

    async def _bring_up(self):
        """None when up, else why not (a short text for the status message)."""
        m = self.modem
        self.step = "modem"
        self.state = "modem"
        # a SIM inserted while the modem runs is read only at its next start: after "not
        # inserted", every bring-up starts with a power cycle (at most one per backoff, 2 min)
        cold = self.failures and (self.failures % self.power_cycle_every == 0
                                  or self.sim == "absent")
        if not await self._command_mode(cold):
            return "modem: no answer to AT (power, wiring, baud)"
        await m.cmd(b"ATE0")
        await m.cmd(b"AT+CMEE=1")
        # SIM
        self.step = self.state = "sim"
        d = self.clock.deadline(self.sim_timeout_ms)
        while True:
            self.sim = await m.sim()
            if self.sim == "ready":
                break
            if self.sim == "pin" and self.sim_pin:
                if not await m.unlock(self.sim_pin):
                    return "sim: PIN refused (+CME ERROR: %s)" % m.cme
                continue
            if self.sim in ("pin", "puk", "wrong"):
                return "sim: %s" % self.sim
            if d.expired():
                return "sim: %s" % ("not inserted" if self.sim == "absent" else self.sim)
            await self.clock.sleep(1000)
        self.iccid = await m.iccid() or self.iccid
        if not await m.set_apn(self.apn):
            return "apn: %s refused" % self.apn
        # registration
        self.step = self.state = "registering"
        d = self.clock.deadline(self.reg_timeout_ms)
        while True:
            self.csq, dbm = await m.csq()
            self.rssi_dbm = dbm
            self.reg = await m.registration()
            if self.reg == 1 or self.reg == 5:
                break
            if d.expired():
                return "registration: %s for %d s (csq %s)" % (
                    REG_NAMES[self.reg] if self.reg is not None and 0 <= self.reg < 6
                    else "no answer", d.elapsed_ms() // 1000, self.csq)
            await self.clock.sleep(self.reg_poll_ms)
        t = await m.network_time()
        if t is not None:
            # +CCLK gives whole seconds: the second it names began 0..999 ms before the answer;
            # half a second before it halves the worst error (and makes it symmetric)
            self._got_time(t, (self.clock.ticks_ms() - 500) & 0x3FFFFFFF)
        # attach and dial
        self.step = self.state = "dialing"
        d = self.clock.deadline(self.attach_timeout_ms)
        while not await m.attached():
            if d.expired():
                return "attach: not attached after %d s" % (d.elapsed_ms() // 1000)
            await m.attach()
            await self.clock.sleep(1000)
        rc = await m.dial()
        if rc != RC_CONNECT:
            return "dial: %s" % RC_NAMES[rc]
        # PPP
        self.step = self.state = "ppp"
        ppp = self.ppp_factory(self.uart)
        self.ppp = ppp
        if self.apn_user:
            ppp.connect(security=ppp.SEC_PAP, user=self.apn_user, key=self.apn_password)
        else:
            ppp.connect()
        d = self.clock.deadline(self.ppp_timeout_ms)
        while not ppp.isconnected():
            if d.expired():
                await self._take_down()
                return "ppp: no connection after %d s (status %s)" % (d.elapsed_ms() // 1000,
                                                                       ppp.status())
            await self.clock.sleep(100)
        self.step = None
        return None

    async def _command_mode(self, cold):
        """Get the modem to answer AT. `cold`: power-cycle it first."""
        m = self.modem
        if cold:
            await self._power_cycle()
            if await self._wait_boot():
                return True
        if await m.at_ok(2):
            return True
        # a modem left in data mode (the box reset while PPP ran) ignores AT: escape
        if await m.escape():
            self.escapes += 1
            self._log("modem was in data mode: escaped")
            await m.hangup()
            if await m.at_ok(2):
                return True
        # off, booting or hung: power it on (a short press does nothing to a running modem)
        # and give it the boot time; twice while STATUS says it is on (a slow boot)
        if m.is_on() is not True:
            await m.power_on()
        if await self._wait_boot():
            return True
        if m.is_on() is True and await self._wait_boot():
            return True
        await self._power_cycle()
        return await self._wait_boot()

    async def _power_cycle(self):
        m = self.modem
        self.power_cycles += 1
        self._log("power cycle")
        if not await m.hard_reset():
            await m.power_off()
            await m.power_on()
        elif m.variant == "a7670":
            await m.power_on()     # after RESET the A7670 waits for PWRKEY (LilyGO's sequence)

    async def _wait_boot(self):
        m = self.modem
        d = self.clock.deadline(self.boot_timeout_ms)
        while not d.expired():
            if m.is_on() is False:
                await self.clock.sleep(500)
                continue
            if await m.at_ok(1, 1000):
                return True
        return False

    async def _watch(self):
        """Return why the link is no longer usable (runs while it is up)."""
        m = self.modem
        ppp = self.ppp
        while True:
            await self.clock.sleep(self.watch_ms)
            if ppp is not None and not ppp.isconnected():
                return "no carrier (ppp status %s)" % ppp.status()
            if m.is_on() is False:
                return "modem off (STATUS low)"
            if m.carrier() is False:
                return "no carrier (DCD)"
            if self._recycle_due():
                return "broker unreachable %d times: re-dialling" % (
                    self.broker_failures_to_recycle)

    async def _take_down(self):
        """End PPP and get the modem back to command mode (best effort, bounded)."""
        ppp = self.ppp
        self.ppp = None
        if ppp is not None:
            try:
                if ppp.isconnected():
                    ppp.disconnect()
                    d = self.clock.deadline(3000)
                    while ppp.isconnected() and not d.expired():
                        await self.clock.sleep(100)
                # release the UART (esp32: active(False) frees the PCB and disables the UART's
                # RX interrupt that feeds PPP): AT commands need it back
                ppp.active(False)
            except Exception as e:  # noqa: BLE001 - the next bring-up starts from scratch anyway
                self._log("ppp close: %r" % (e,))
        m = self.modem
        await self.clock.sleep(500)
        m.drain()
        if await m.at_ok(1):
            await m.hangup()
            return
        if await m.escape():
            await m.hangup()

    # ---- status
    def dns_server(self):
        ppp = self.ppp
        if ppp is None:
            return None
        try:
            return ppp.ifconfig()[3]
        except Exception:  # noqa: BLE001
            return None

    def _status(self):
        s = Link._status(self)
        m = self.modem
        s["variant"] = self.variant
        s["sim"] = self.sim
        s["iccid"] = self.iccid
        s["csq"] = self.csq
        s["rssi_dbm"] = self.rssi_dbm
        s["registration"] = (REG_NAMES[self.reg] if self.reg is not None and 0 <= self.reg < 6
                             else self.reg)
        s["escapes"] = self.escapes
        s["power_cycles"] = self.power_cycles
        s["at_timeouts"] = m.timeouts
        if self.state != "up" and self.step:
            s["step"] = self.step
        return s

    def rssi(self):
        return self.rssi_dbm
