# Remote configuration: the retained per-device topic envbox/v1/<device>/config carries a JSON
# object; it is validated whole, persisted (config.json in the state directory, written to a
# temporary file and renamed, so a power cut leaves the old or the new file, never half of one)
# and applied without a reboot. A bad document is refused with a status message and the old
# configuration stays in force.
#
#   {"version": 3,                        optional, echoed in status messages
#    "period_s": 10,                      sampling period: divides 3600, 5..3600
#    "channels": ["pm25_ugm3", ...],      enabled channels (wire names); absent = every fitted one
#    "cal": {"pm25_ugm3": {"offset": -1.5, "slope": 0.93}}}
#                                         corrected = raw * slope + offset, in the channel's unit
#
# Signed documents (docs/provisioning.md, "Remote configuration"). A box provisioned with a config
# key (config.json "config_key", per device) takes only signed documents; the message on the
# topic is
#
#   <64 hex digits: HMAC-SHA256(key, device id + "\n" + document)> <space> <document>
#
# with the document at most MAX_DOC_BYTES. `envbox config push` (tools/configpush.py) signs with
# this module's sign() on the host, the box checks with unwrap(). The box also refuses a version
# older than the one it applied (app._on_config): an old signed document replayed stays old.
# Only a box without a key whose config.json says `insecure: true` takes unsigned documents.
#
# Calibration is applied in integers on the box (app.Applied: slope x10^4, offset in the wire
# scale), and a sample that had any correction applied carries wire.FLAG_CALIBRATED. This module
# is loaded only to parse, persist or load a config, and unloaded after (app._cold).

import json
import os

from . import wire
from .compat import cold

_KEYS = ("version", "period_s", "channels", "cal")
MAX_DOC_BYTES = 2048        # a configuration document, without its signature
SIG_HEX = 64                # the signature: HMAC-SHA256 as hex digits


def hmac_sha256(key, *parts):
    """HMAC-SHA256 (RFC 2104) of the concatenated `parts` with `key`: MicroPython has
    hashlib.sha256 but no hmac module. Allocates a little; runs once per config message."""
    import hashlib
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    pad = bytearray(64)
    pad[:len(key)] = key
    for i in range(64):
        pad[i] ^= 0x36
    h = hashlib.sha256(pad)
    for p in parts:
        h.update(p)
    inner = h.digest()
    for i in range(64):
        pad[i] ^= 0x36 ^ 0x5C
    h = hashlib.sha256(pad)
    h.update(inner)
    return h.digest()


def _sig_hex(key, device, doc):
    import binascii
    return binascii.hexlify(hmac_sha256(key, device, b"\n", doc))


def sign(key, device, doc):
    """The message to publish for `doc` (bytes) to box `device` (bytes) with its key."""
    return _sig_hex(key, device, doc) + b" " + doc


def unwrap(key, device, payload, unsigned_ok=False):
    """(document bytes, None) or (None, reason) for a message on the config topic. With a key,
    only a message signed with it passes; without one, an unsigned document passes only if
    `unsigned_ok` (a box whose config says insecure)."""
    n = len(payload)
    if key is None:
        if not unsigned_ok:
            return None, "no config key provisioned: remote config refused"
        doc = payload
    else:
        if n < SIG_HEX + 2 or payload[SIG_HEX] != 0x20:
            return None, "not signed"
        want = _sig_hex(key, device, payload[SIG_HEX + 1:])
        d = 0
        for i in range(SIG_HEX):
            d |= want[i] ^ payload[i]     # all the digits, whatever differs first
        if d:
            return None, "bad signature"
        doc = payload[SIG_HEX + 1:]
    if len(doc) > MAX_DOC_BYTES:
        return None, "document larger than %d bytes" % MAX_DOC_BYTES
    return doc, None


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(doc):
    """Return (normalised config dict, None) or (None, reason)."""
    if not isinstance(doc, dict):
        return None, "config is not a JSON object"
    for k in doc:
        if k not in _KEYS:
            return None, "unknown key %s" % k
    out = {"version": 0, "period_s": 10, "channels": None, "cal": {}}
    v = doc.get("version", 0)
    if not isinstance(v, int) or isinstance(v, bool):
        return None, "version is not an integer"
    out["version"] = v
    p = doc.get("period_s", 10)
    if not isinstance(p, int) or isinstance(p, bool) or p < 5 or p > 3600 or 3600 % p:
        return None, "period_s must be an integer dividing 3600, 5..3600"
    out["period_s"] = p
    names = [c[0] for c in cold("channels").CHANNELS]
    ch = doc.get("channels")
    if ch is not None:
        if not isinstance(ch, list):
            return None, "channels is not a list"
        for n in ch:
            if n not in names:
                return None, "unknown channel %s" % n
        out["channels"] = list(ch)
    cal = doc.get("cal", {})
    if not isinstance(cal, dict):
        return None, "cal is not an object"
    for n in cal:
        if n not in names:
            return None, "cal: unknown channel %s" % n
        c = cal[n]
        if not isinstance(c, dict):
            return None, "cal %s is not an object" % n
        for k in c:
            if k not in ("offset", "slope"):
                return None, "cal %s: unknown key %s" % (n, k)
        off = c.get("offset", 0)
        sl = c.get("slope", 1)
        if not _num(off) or not (-10000 <= off <= 10000):
            return None, "cal %s: offset must be a number within +-10000" % n
        if not _num(sl) or not (0.1 <= sl <= 10):
            return None, "cal %s: slope must be a number in 0.1..10" % n
        out["cal"][n] = {"offset": off, "slope": sl}
    return out, None


def load(path):
    """The persisted config, or the defaults (also when the file is unreadable)."""
    try:
        with open(path) as f:
            cfg, err = validate(json.load(f))
        if cfg is not None:
            return cfg
    except (OSError, ValueError):
        pass
    return validate({})[0]


def save(path, cfg):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.rename(tmp, path)


def handle(app, payload):
    """A message on the config topic (firmware/app.py App._on_config): check its signature,
    validate, persist, apply; returns the status message that says what happened (or None for
    the retained copy of what is in force, and for a cleared topic). Whatever arrives is
    answered: a message too large for the MQTT client (payload None, read past and acknowledged
    by firmware/mqtt.py), unsigned or forged, unparseable, invalid or older than what is applied
    is `refused` with the reason, and the configuration in force stays."""
    kept = app.cfg.version
    b = app.board
    if payload is None:
        return _refused("larger than %d bytes" % b.max_packet_bytes, kept)
    if not len(payload):
        return None     # the retained config was cleared: nothing to apply
    doc, err = unwrap(b.config_key, app.device, payload, b.insecure)
    if doc is None:
        return _refused(err, kept)
    try:
        doc = json.loads(doc)
    except ValueError:
        return _refused("config is not JSON", kept)
    cfg, err = validate(doc)
    if cfg is None:
        return _refused(err, kept)
    if cfg == app.cfg.cfg:
        return None     # the retained copy of what is already in force (every reconnect)
    v = cfg["version"]
    if v <= kept:
        # an old document replayed (signed once, still valid) or a new one that forgot to count
        # up: only a newer version replaces what is in force
        return _refused("version %d is not newer than the applied %d" % (v, kept), kept)
    try:
        save(app.cfg_path, cfg)
    except OSError as e:
        return _refused("persist failed: %s" % e, kept)
    app.apply_config(cfg)
    return '{"config":"applied","version":%d}' % v


def _refused(why, kept):
    return '{"config":"refused","error":%s,"kept_version":%d}' % (json.dumps(why), kept)
