"""simulator/models/simcom.py: the golden AT exchanges (tests/vectors/simcom.json, also decoded
by the firmware's driver under MicroPython in tests/firmware/test_simcom.py), and the power,
data-mode and fault behaviour the link supervisor relies on; simulator/modem.py's data link."""

import json
import socket
import time
from pathlib import Path

import pytest

from envbox.simulator.clock import VirtualClock
from envbox.simulator.models.simcom import (LCP_CONF_ACK, LCP_CONF_REQ, LCP_TERM_REQ, SIMCom)
from envbox.simulator.modem import ModemRig

VEC = json.loads((Path(__file__).resolve().parent / "vectors" / "simcom.json").read_text())
T0 = 1_700_000_000.0


def booted(variant="sim7600", t=T0, **kw):
    m = SIMCom(variant=variant, **kw)
    m.set_pin("FLIGHT", 1, t)                   # the LTE board drives RF on
    m.set_pin("POWERON", 1, t)
    m.set_pin("PWRKEY", 1, t)
    m.set_pin("PWRKEY", 0, t + 0.6)
    t = t + 0.6 + m.boot_s
    m.due(t)
    assert m.power == "on"
    send(m, b"ATE0", t)
    send(m, b"AT+CMEE=1", t)
    m.due(t + 1)
    return m, t


def send(m, cmd, t):
    m.receive(cmd + b"\r", t)
    return m.due(t + 1)


def apply_state(m, st, t):
    if "csq" in st:
        m.csq_code = st["csq"]
    if st.get("no_service"):
        m.no_service_until = t + 1e6
    if "sim_inserted" in st:
        m.sim_inserted = st["sim_inserted"]
        m._sim_seen = st["sim_inserted"]
    if "sim_pin" in st:
        m.sim_pin = st["sim_pin"]
    if "iccid" in st:
        m.iccid = st["iccid"]
    if st.get("denied"):
        m.denied = True
    if "nitz" in st:
        m.nitz = st["nitz"]
    if "tz_quarters" in st:
        m.tz_quarters = st["tz_quarters"]
    if "apn" in st:
        m.apn = st["apn"]
    if st.get("registered"):
        m.reg_stat(t)
        m.registered_since = t - 10


@pytest.mark.parametrize("ex", VEC["exchanges"], ids=[e["name"] for e in VEC["exchanges"]])
def test_model_answers_as_the_vectors_say(ex):
    st = ex.get("state", {})
    t = st.get("t", T0 + 100)
    m, t_boot = booted(t=t - st.get("uptime_s", 100) - 13)
    m._t_power = t - st.get("uptime_s", 100)
    apply_state(m, st, t)
    assert send(m, ex["command"].encode(), t) == ex["answer"].encode()


def test_pwrkey_presses_power_on_and_off_and_status_follows():
    m = SIMCom(variant="sim7600")
    assert m.pin_out("STATUS", T0) == 0
    m.set_pin("PWRKEY", 1, T0)
    m.set_pin("PWRKEY", 0, T0 + 0.05)           # too short for the SIM7600 (100 ms)
    assert m.power == "off"
    m.set_pin("PWRKEY", 1, T0 + 1)
    m.set_pin("PWRKEY", 0, T0 + 1.5)
    assert m.power == "booting" and m.pin_out("STATUS", T0 + 2) == 1
    assert send(m, b"AT", T0 + 2) == b""        # silent while it boots
    out = m.due(T0 + 1.5 + m.boot_s)
    assert out.startswith(b"\r\nRDY\r\n") and b"+CPIN: READY" in out
    assert send(m, b"AT", T0 + 20) == b"AT\r\r\nOK\r\n"     # echo until ATE0
    m.set_pin("PWRKEY", 1, T0 + 30)
    m.set_pin("PWRKEY", 0, T0 + 33)             # a long press powers it down
    m.due(T0 + 35)
    assert m.power == "off" and m.pin_out("STATUS", T0 + 35) == 0


def test_a7670_needs_its_supply_switch():
    m = SIMCom(variant="a7670")
    m.set_pin("PWRKEY", 1, T0)
    m.set_pin("PWRKEY", 0, T0 + 0.2)
    assert m.power == "off"                     # POWERON (GPIO12) low: no supply
    m.set_pin("POWERON", 1, T0 + 1)
    m.set_pin("PWRKEY", 1, T0 + 1)
    m.set_pin("PWRKEY", 0, T0 + 1.2)
    out = m.due(T0 + 1.2 + m.boot_s)
    assert m.power == "on" and b"*ATREADY: 1" in out


def dial(m, t):
    m.echo = False
    m.apn = "cmnet"
    m.registered_since = t - 10
    assert send(m, b"ATD*99#", t) == b"\r\nCONNECT 115200\r\n"
    m.receive(LCP_CONF_REQ, t + 1)
    assert m.due(t + 2) == LCP_CONF_ACK and m.passing()


def test_data_mode_ignores_at_and_leaves_only_on_guarded_plus():
    m, t = booted()
    dial(m, t)
    assert send(m, b"AT", t + 5) == b""         # in data mode AT is just data
    m.receive(b"+++", t + 5.5)                  # not 1 s of silence before it
    assert m.due(t + 8) == b"" and m.mode == "data"
    m.receive(b"+++", t + 10)
    m.receive(b"x", t + 10.5)                   # data within the guard after it
    assert m.due(t + 12) == b"" and m.mode == "data"
    m.receive(b"+++", t + 20)
    assert m.due(t + 22) == b"\r\nOK\r\n" and m.mode == "command" and m.call
    assert not m.passing()
    assert send(m, b"ATH", t + 23) == b"\r\nOK\r\n" and not m.call
    assert m.counters["escapes"] == 1


def test_carrier_loss_sends_terminate_and_no_carrier_then_no_service():
    m, t = booted()
    dial(m, t)
    m.drop_carrier(t + 5, outage_s=60)
    assert m.due(t + 6) == LCP_TERM_REQ + b"\r\nNO CARRIER\r\n"
    assert m.mode == "command" and not m.call and m.pin_out("DCD", t + 6) == 1
    assert send(m, b"AT+CEREG?", t + 30) == b"\r\n+CEREG: 0,2\r\n\r\nOK\r\n"
    send(m, b"AT+CEREG?", t + 80)               # service is back: registering takes 2 s
    assert send(m, b"AT+CEREG?", t + 83) == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"


def test_a_sim_inserted_while_running_is_seen_at_the_next_start():
    m, t = booted()
    m.sim_inserted = m._sim_seen = False        # as if it had started without a SIM
    assert send(m, b"AT+CPIN?", t) == b"\r\n+CME ERROR: 10\r\n"
    m.sim_inserted = True
    assert send(m, b"AT+CPIN?", t + 1) == b"\r\n+CME ERROR: 10\r\n"
    send(m, b"AT+CFUN=1,1", t + 2)
    m.due(t + 3)
    m.due(t + 3 + m.boot_s)
    send(m, b"ATE0", t + 20)
    assert send(m, b"AT+CPIN?", t + 20) == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"


def test_hung_modem_answers_nothing_until_power_cycled():
    m, t = booted()
    m.hung = True
    assert send(m, b"AT", t) == b""
    m.set_pin("PWRKEY", 1, t + 1)
    m.set_pin("PWRKEY", 0, t + 4)
    m.due(t + 6)
    m.set_pin("PWRKEY", 1, t + 7)
    m.set_pin("PWRKEY", 0, t + 7.5)
    m.due(t + 7.5 + m.boot_s)
    assert send(m, b"AT", t + 30) == b"AT\r\r\nOK\r\n"


def test_odd_bytes_never_raise():
    import random
    rng = random.Random(7)
    m, t = booted()
    for i in range(2000):
        m.receive(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), t + i * 0.01)
        m.due(t + i * 0.01)
    assert m.counters.get("model_errors", 0) == 0
    m, t = booted()
    dial(m, t + 30)
    for i in range(200):
        m.receive(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), t + 40 + i)
        m.due(t + 40 + i)


# -- the data link ---------------------------------------------------------------------------------

@pytest.fixture
def echo_server():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    import threading

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return

            def pump(c=c):
                try:
                    while True:
                        d = c.recv(4096)
                        if not d:
                            break
                        c.sendall(d)
                except OSError:
                    pass
                c.close()
            threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    yield ls.getsockname()[1]
    ls.close()


@pytest.mark.parametrize("cut", ["blackhole", "reset"])
def test_proxy_passes_only_while_the_call_is_up_and_cuts_on_carrier_loss(tmp_path, echo_server,
                                                                         cut):
    clock = VirtualClock(T0, 60)
    m = SIMCom(powered=True)
    rig = ModemRig(m, clock, str(tmp_path), ("127.0.0.1", echo_server), cut=cut).start()
    try:
        # no call: reset at once (no route). The reset can reach the client before its connect()
        # has returned (a connect with a time-out polls, then reads the socket's error).
        try:
            s = socket.create_connection(("127.0.0.1", rig.proxy_port), timeout=5)
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            s.close()
        except ConnectionResetError:
            pass
        assert rig.counters["refused"] == 1, rig.counters
        with rig.lock:
            dial(m, clock.now())
        s = socket.create_connection(("127.0.0.1", rig.proxy_port), timeout=5)
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        with rig.lock:
            m.drop_carrier(clock.now())
        deadline = time.time() + 10
        while rig.counters["cut"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert rig.counters["cut"] == 1
        s.settimeout(0.5)
        if cut == "reset":
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
        else:
            s.sendall(b"ping")                  # a lost radio link: silence, no error
            with pytest.raises(socket.timeout):
                s.recv(10)
        s.close()
    finally:
        rig.stop()
