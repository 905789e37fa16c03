"""`envbox config push DEVICE FILE --fleet DIR [--wait S]`: send a box its remote configuration,
validated with the box's own schema, signed with its key, as the configuration account.

1. FILE is parsed and checked with firmware/config.py's validate(), the code the box runs: a
   document the box would refuse is refused here, with the box's reason.
2. Its version must be newer than the last one pushed to this box (the fleet records them in
   pushed.json): the box refuses an older or equal one, so an old signed document replayed
   cannot undo a newer one. Without "version", the next number is taken.
3. It is sent compact (no indentation) and at most 2,048 bytes (firmware/config.py
   MAX_DOC_BYTES): anything larger is refused, so no configuration comes near the box's MQTT
   packet limit.
4. It is signed with the box's config key (HMAC-SHA256 over the device id and the document,
   firmware/config.py sign()) and published retained, QoS 1, on envbox/v1/<device>/config with
   the envbox-config account, the only one the broker's ACL lets write configuration. The
   connection is TLS to the fleet's broker, verified against the fleet's CA (--no-tls only to a
   loopback address, on the broker's machine).
5. With --wait S it waits up to S seconds for the box's answer on its status topic: `applied`
   (exit 0) or `refused` with the reason (exit 1); a box that is offline gets the retained
   document when it next connects.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
from pathlib import Path

from .firmware import config as boxconfig
from .fleet import Fleet, UsageError, check_device_id, dumps, write_if_changed

EXIT_USAGE = 2
CONFIG_ACCOUNT = "envbox-config"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def prepare(fleet: Fleet, dev: str, text: str, version: int | None = None,
            force: bool = False) -> tuple[bytes, int]:
    """(signed message, version) for `text`, or UsageError with the reason."""
    check_device_id(dev)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise UsageError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError("config is not a JSON object")
    last = pushed(fleet).get(dev, 0)
    if version is not None:
        doc["version"] = version
    elif "version" not in doc:
        doc["version"] = last + 1
    cfg, err = boxconfig.validate(doc)
    if cfg is None:
        raise UsageError(f"the box would refuse it: {err}")
    if cfg["version"] <= last and not force:
        raise UsageError(f"version {cfg['version']} is not newer than the {last} last pushed to "
                         f"{dev}: the box would refuse it (count the version up)")
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    if len(body) > boxconfig.MAX_DOC_BYTES:
        raise UsageError(f"{len(body)} bytes (compact): more than the "
                         f"{boxconfig.MAX_DOC_BYTES} a box takes")
    acct = fleet.account(dev)
    key = acct.get("config_key")
    if not key:
        raise UsageError(f"{dev}: no config key in the fleet's secrets")
    return boxconfig.sign(bytes.fromhex(key), dev.encode(), body), cfg["version"]


def pushed(fleet: Fleet) -> dict:
    try:
        return json.loads((fleet.root / "pushed.json").read_text())
    except FileNotFoundError:
        return {}


def record_pushed(fleet: Fleet, dev: str, version: int) -> None:
    d = pushed(fleet)
    d[dev] = version
    write_if_changed(fleet.root / "pushed.json", dumps(d))


def publish(fleet: Fleet, dev: str, message: bytes, broker: str, tls: bool = True,
            wait_s: float = 0.0, timeout_s: float = 20.0) -> dict | None:
    """Publish the signed message retained with the config account; with wait_s, return the
    box's answer (its status message with "config") or None."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, _, port = broker.rpartition(":")
    acct = fleet.account(CONFIG_ACCOUNT)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=CONFIG_ACCOUNT,
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.username_pw_set(CONFIG_ACCOUNT, acct["password"])
    if tls:
        ctx = ssl.create_default_context(cafile=str(fleet.root / "ca.pem"))
        name = fleet.settings.get("tls_server_hostname")
        c.tls_set_context(ctx)
        if name and name != host:
            # the broker is given as an address: check the certificate's name ourselves
            ctx.check_hostname = False
            c._envbox_name = name
    answer: dict = {}
    got = threading.Event()
    connected = threading.Event()
    status_topic = f"envbox/v1/{dev}/status"

    def on_connect(cl, u, flags, rc, props):
        if rc == 0:
            if wait_s:
                cl.subscribe(status_topic, qos=1)
            connected.set()
        else:
            answer["connect_error"] = str(rc)
            connected.set()

    def on_message(cl, u, msg):
        if not msg.payload.startswith(b"{"):
            return
        try:
            d = json.loads(msg.payload)
        except ValueError:
            return
        if "config" in d:
            answer.update(d)
            got.set()

    c.on_connect = on_connect
    c.on_message = on_message
    try:
        c.connect(host, int(port), keepalive=30)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot reach the broker {broker}: {e}") from None
    c.loop_start()
    try:
        if not connected.wait(timeout_s) or "connect_error" in answer:
            raise UsageError(f"the broker refused {CONFIG_ACCOUNT}: "
                             f"{answer.get('connect_error', 'no answer')}")
        if tls and getattr(c, "_envbox_name", None):
            cert = c.socket().getpeercert()
            names = [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
            if c._envbox_name not in names:
                raise UsageError(f"the broker's certificate is for {names}, not "
                                 f"{c._envbox_name}")
        info = c.publish(f"envbox/v1/{dev}/config", message, qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise UsageError("the broker did not acknowledge the publish")
        if wait_s:
            got.wait(wait_s)
            return dict(answer) if got.is_set() else None
        return None
    finally:
        c.loop_stop()
        c.disconnect()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "push":
        print("usage: envbox config push DEVICE FILE --fleet DIR [--wait S]\n\n" + __doc__,
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_USAGE
    p = argparse.ArgumentParser(prog="envbox config push", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("device")
    p.add_argument("file", help="the JSON document (firmware/config.py lists its keys)")
    p.add_argument("--fleet", default="fleet", help="the fleet directory (default ./fleet)")
    p.add_argument("--broker", help="HOST:PORT (default: the fleet's broker, TLS)")
    p.add_argument("--no-tls", action="store_true",
                   help="plaintext: only to a loopback address (on the broker's machine)")
    p.add_argument("--version", type=int, help="set the document's version")
    p.add_argument("--force", action="store_true",
                   help="send even if the version is not newer than the last pushed")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for the box to answer applied/refused")
    p.add_argument("--dry-run", action="store_true", help="check and sign, print, send nothing")
    try:
        a = p.parse_args(argv[1:])
    except SystemExit as e:
        return int(e.code or 0)
    try:
        fleet = Fleet(a.fleet)
        try:
            text = Path(a.file).read_text()
        except OSError as e:
            raise UsageError(f"{a.file}: {e}") from None
        message, version = prepare(fleet, a.device, text, a.version, a.force)
        if a.dry_run:
            print(json.dumps({"device": a.device, "version": version, "bytes": len(message),
                              "message": message.decode()}))
            return 0
        broker = a.broker or fleet.settings.get("broker")
        if not broker:
            raise UsageError("no broker: --broker HOST:PORT")
        host = broker.rpartition(":")[0]
        if a.no_tls and host not in LOOPBACK:
            raise UsageError("--no-tls only to a loopback address: the password would cross "
                             "the network in clear")
        ans = publish(fleet, a.device, message, broker, tls=not a.no_tls, wait_s=a.wait)
        record_pushed(fleet, a.device, version)
    except UsageError as e:
        print(f"envbox config push: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = {"device": a.device, "version": version, "bytes": len(message), "published": True}
    if a.wait:
        out["answer"] = ans
    print(json.dumps(out, sort_keys=True))
    if a.wait and (ans is None or ans.get("config") != "applied"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
