# Signed remote configuration and the box's credentials, under MicroPython (the Unix port and the
# 32-bit lane): HMAC-SHA256 against RFC 4231's vectors, the signed message format
# (firmware/config.py), the app's answer to every kind of config message (firmware/app.py
# _on_config: forged, unsigned, replayed, older, oversized, unparseable), and the board's reading
# of its login, CA and key (firmware/boardbase.py load_net). The same signing on the host is
# tests/test_config_push.py; the whole path with mosquitto is tests/test_provision_e2e.py.
import binascii
import json

import mptest
from appfakes import FakeBoard, Script
from envbox.firmware import app as A
from envbox.firmware import config as C

KEY = bytes(range(32))
DEV = b"sj-001"

# a self-signed test CA (EC P-256, CN envbox-test-ca): load_verify_locations parses it
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUE2PtcCKIK/CXP60cm3sFMkU4K1EwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZW52Ym94LXRlc3QtY2EwIBcNMjYxMjAzMDUxMzQwWhgPMjEy
NjExMDkwNTEzNDBaMBkxFzAVBgNVBAMMDmVudmJveC10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEqSFmqxYefxZUdFO2BD1eS5vLrnWtEvKC/eYdUO3Q
4AmJUdk3DMGlLLBck1v3sYPXewUi9Uq3RFk83YVTq+nstaNTMFEwHQYDVR0OBBYE
FHFNm0Wp0l8jAw8z4exRnpRXB8uRMB8GA1UdIwQYMBaAFHFNm0Wp0l8jAw8z4exR
npRXB8uRMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgZH2j5l8o
1glKTxZ/jKGT4LbTnO0vxiuaRGKlUGU6xRACIQDFb5H3w97dhHp5lpHVJMSd3Ad6
r1pNn710/IoQrAuQHg==
-----END CERTIFICATE-----
"""


def _hex(b):
    return binascii.hexlify(b).decode()


def test_hmac_sha256_rfc4231_vectors():
    # RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first)
    mptest.eq(_hex(C.hmac_sha256(b"\x0b" * 20, b"Hi There")),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    mptest.eq(_hex(C.hmac_sha256(b"Jefe", b"what do ya want ", b"for nothing?")),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    mptest.eq(_hex(C.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - "
                                 b"Hash Key First")),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_signed_message_round_trip_and_every_forgery_refused():
    doc = b'{"version": 3, "period_s": 20}'
    msg = C.sign(KEY, DEV, doc)
    mptest.eq(msg[64:65], b" ")
    mptest.eq(C.unwrap(KEY, DEV, msg), (doc, None))
    # one character of the document changed
    forged = msg[:-3] + b"30}"
    mptest.eq(C.unwrap(KEY, DEV, forged), (None, "bad signature"))
    # one digit of the signature changed
    d0 = msg[:1]
    forged = (b"0" if d0 != b"0" else b"1") + msg[1:]
    mptest.eq(C.unwrap(KEY, DEV, forged), (None, "bad signature"))
    # signed for another box (same key by mistake) or with another key
    mptest.eq(C.unwrap(KEY, b"sj-002", msg), (None, "bad signature"))
    mptest.eq(C.unwrap(bytes(32), DEV, msg), (None, "bad signature"))
    # unsigned
    mptest.eq(C.unwrap(KEY, DEV, doc), (None, "not signed"))
    mptest.eq(C.unwrap(KEY, DEV, b""), (None, "not signed"))
    # too long, even when signed
    big = b'{"version": 4' + b" " * 2100 + b"}"
    mptest.eq(C.unwrap(KEY, DEV, C.sign(KEY, DEV, big))[1], "document larger than 2048 bytes")
    # without a key: unsigned only when allowed (insecure)
    mptest.eq(C.unwrap(None, DEV, doc)[0], None)
    mptest.eq(C.unwrap(None, DEV, doc, True), (doc, None))


def _app(key=KEY, insecure=False):
    b = FakeBoard("pm-gnss")
    b.config_key = key
    b.insecure = insecure
    return A.App(b, client_factory=Script().factory)


def _answer(a, payload):
    r = a._on_config(payload)
    return None if r is None else json.loads(r)


def _signed(doc):
    return C.sign(KEY, DEV, json.dumps(doc).encode())


def test_the_app_applies_only_signed_newer_versions():
    a = _app()
    mptest.eq(_answer(a, _signed({"version": 2, "period_s": 20})),
              {"config": "applied", "version": 2})
    mptest.eq(a.period_s, 20)
    # the retained copy, again on every reconnect: nothing to say
    mptest.eq(_answer(a, _signed({"version": 2, "period_s": 20})), None)
    # a forged document (the gateway's or a box's account cannot publish one, but a broker
    # break-in could): refused, the applied version kept
    forged = _signed({"version": 9, "period_s": 60})[:-4] + b"30}"
    r = _answer(a, forged)
    mptest.eq((r["config"], r["error"], r["kept_version"]), ("refused", "bad signature", 2))
    mptest.eq(a.period_s, 20)
    # an unsigned document
    r = _answer(a, b'{"version": 9, "period_s": 60}')
    mptest.eq((r["config"], r["error"]), ("refused", "not signed"))
    # an old signed document replayed, and a new one that did not count its version up
    r = _answer(a, _signed({"version": 1, "period_s": 30}))
    mptest.eq((r["config"], r["error"]), ("refused", "version 1 is not newer than the applied 2"))
    r = _answer(a, _signed({"version": 2, "period_s": 30}))
    mptest.eq(r["config"], "refused")
    mptest.eq(a.period_s, 20)
    # signed but invalid, signed but not JSON
    r = _answer(a, _signed({"version": 3, "period_s": 7}))
    mptest.eq(r["config"], "refused")
    mptest.eq("period_s" in r["error"], True)
    r = _answer(a, C.sign(KEY, DEV, b"{version: 3"))
    mptest.eq((r["config"], r["error"]), ("refused", "config is not JSON"))
    # larger than the MQTT client's packet limit (read past and acknowledged by mqtt.py)
    r = _answer(a, None)
    mptest.eq((r["config"], r["error"], r["kept_version"]), ("refused", "larger than 4096 bytes", 2))
    # a cleared retained topic: nothing to apply, nothing to say
    mptest.eq(_answer(a, b""), None)
    # persisted: a new app on the same state finds version 2
    mptest.eq(C.load(a.cfg_path)["version"], 2)
    mptest.eq(_answer(a, _signed({"version": 3, "period_s": 30})),
              {"config": "applied", "version": 3})


def test_without_a_key_only_an_insecure_box_takes_unsigned_documents():
    a = _app(key=None, insecure=False)
    r = _answer(a, b'{"version": 1, "period_s": 20}')
    mptest.eq(r["config"], "refused")
    mptest.eq("no config key" in r["error"], True)
    a = _app(key=None, insecure=True)
    mptest.eq(_answer(a, b'{"version": 1, "period_s": 20}'), {"config": "applied", "version": 1})
    # with a key, insecure does not lift the signature
    a = _app(key=KEY, insecure=True)
    mptest.eq(_answer(a, b'{"version": 1, "period_s": 20}')["error"], "not signed")


def _has_ssl():
    try:
        import ssl
        return hasattr(ssl, "SSLContext")
    except ImportError:
        return False


def test_boards_read_login_tls_and_key_in_one_place():
    from envbox.firmware.boardbase import BoardBase
    tls = _has_ssl()       # the 32-bit WebAssembly build has no ssl module
    cfg = {"device_id": "sj-007", "broker": "mqtt.fleet.example:8883", "mqtt_password": "pw7",
           "config_key": _hex(KEY), "modules": ["pms5003"]}
    if tls:
        cfg["ca_pem"] = CA_PEM
    b = BoardBase()
    b.load_net(cfg)
    mptest.eq((b.device_id, b.mqtt_user, b.mqtt_password), (b"sj-007", b"sj-007", b"pw7"))
    mptest.eq((b.broker_host, b.broker_port), ("mqtt.fleet.example", 8883))
    mptest.eq(b.config_key, KEY)
    mptest.eq(b.mqtt_server_hostname, None)     # the broker's own name is checked
    # the secrets leave the board's config dict (it keeps the rest)
    mptest.eq(sorted(cfg), ["broker", "device_id", "modules"])
    if tls:
        mptest.eq(b.mqtt_ssl is not None, True)
        mptest.eq((b.connection_insecure(), b.net_refusal()), (False, None))
    # no CA: refused unless insecure
    b = BoardBase()
    b.load_net({"device_id": "sj-008", "broker": "10.0.0.1:1883", "mqtt_password": "pw"})
    mptest.eq(b.connection_insecure(), True)
    mptest.eq("ca_pem" in b.net_refusal(), True)
    b = BoardBase()
    b.load_net({"device_id": "sj-008", "broker": "10.0.0.1:1883", "insecure": True})
    mptest.eq((b.connection_insecure(), b.net_refusal(), b.mqtt_user), (True, None, None))
    # a name for the certificate when the broker is given as an address
    if tls:
        b = BoardBase()
        b.load_net({"device_id": "sj-009", "broker": "192.0.2.7:8883", "ca_pem": CA_PEM,
                    "tls_server_hostname": "mqtt.fleet.example"})
        mptest.eq(b.mqtt_server_hostname, "mqtt.fleet.example")
        mptest.eq("mqtt_password" in b.net_refusal(), True)
        # "insecure" must be the JSON value true, not a string
        b = BoardBase()
        b.load_net({"device_id": "sj-009", "broker": "192.0.2.7:8883", "insecure": "false"})
        mptest.eq(b.net_refusal() is not None, True)


async def test_a_box_without_credentials_samples_but_does_not_connect():
    import asyncio
    sc = Script()
    b = FakeBoard("pm-gnss")
    b.insecure = False
    a = A.App(b, client_factory=sc.factory)
    mptest.eq(a.net_refusal is not None, True)
    t = asyncio.create_task(a.main())
    for _ in range(40):
        await asyncio.sleep_ms(5)
    t.cancel()
    mptest.eq(sc.connects, 0)
    mptest.eq(any("not connecting" in m for m in b.logs), True)


def test_an_insecure_box_says_so_in_its_status():
    a = _app(key=None, insecure=True)
    mptest.eq(json.loads(a.status_json()).get("insecure"), True)


mptest.main(globals())
