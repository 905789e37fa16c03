"""Gateway configuration: a TOML file (config/gateway.toml is the commented sample), defaults for
every key, environment overrides and validation.

Environment overrides: ENVBOX_GW_<SECTION>_<KEY>, e.g. ENVBOX_GW_SINK_TOKEN or
ENVBOX_GW_MQTT_PORT=1884. They win over the file, so secrets can stay out of it (systemd
`EnvironmentFile=`). A value is parsed as the key's type (int, float, bool: 1/0/true/false/yes/no).

Secrets (passwords, tokens) never reach a log: the dataclasses' repr masks them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

ENV_PREFIX = "ENVBOX_GW_"
SECRET_KEYS = frozenset({"password", "token"})


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key."""


def _masked_repr(self) -> str:
    parts = []
    for f in fields(self):
        v = getattr(self, f.name)
        if f.name in SECRET_KEYS and v:
            v = "***"
        parts.append(f"{f.name}={v!r}")
    return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(repr=False)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    # "3.1.1": clean_session=False; the broker bounds the session (persistent_client_expiration)
    # and the in-flight window (max_inflight_messages). "5": clean_start=False + Session Expiry
    # + Receive Maximum. 3.1.1 is the default because paho decodes its PUBLISH for 20 % less
    # CPU per live sample (no Properties object per message); docs/gateway.md "Measured here".
    protocol: str = "3.1.1"
    # Fixed, so the broker keeps our session (queued QoS 1 messages) while we are away.
    client_id: str = "envbox-gateway-1"
    username: str = ""
    password: str = ""
    topic: str = "envbox/v1/+/data"
    shared_group: str = ""            # "" = plain subscription; else $share/<group>/<topic>
    session_expiry_s: int = 7 * 86400  # how long the broker keeps our session while we are gone
    keepalive_s: int = 30
    receive_maximum: int = 1000       # unacked QoS 1 messages the broker may have in flight to us
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_insecure: bool = False        # skip host name check (never in production)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    __repr__ = _masked_repr

    def subscription(self) -> str:
        if self.shared_group:
            return f"$share/{self.shared_group}/{self.topic}"
        return self.topic

    def device_index(self) -> int:
        """Index of the topic level that names the device (the single `+`)."""
        return self.topic.split("/").index("+")

    def ack_topic_parts(self, gateway_id: str) -> tuple[str, str]:
        """(before, after) the device id in the acknowledgement topic: the data topic's levels
        up to the device, then ack/<gateway_id> (envbox/v1/+/data -> envbox/v1/<dev>/ack/<gw>)."""
        levels = self.topic.split("/")
        i = levels.index("+")
        return "/".join(levels[:i]) + "/", f"/ack/{gateway_id}"


@dataclass(repr=False)
class IngestConfig:
    commit_max_messages: int = 500    # commit (then ack) after this many messages ...
    commit_max_ms: float = 50.0       # ... or this long after the first uncommitted one
    commit_max_samples: int = 15000   # ... or once the group carries this many samples
    queue_max_messages: int = 1000    # received, not yet in a commit group: beyond, stop reading
    queue_max_bytes: int = 8 * 1024 * 1024   # ... or beyond this many payload bytes
    max_future_s: int = 86400         # samples stamped further ahead of our clock: dead letter
    max_past_s: float = 16 * 86400.0  # samples older than this: dead letter (too old); 0 = off
    __repr__ = _masked_repr


@dataclass(repr=False)
class AckConfig:
    # End-to-end acknowledgements (docs/gateway.md "Acknowledgements to the boxes"): after a
    # spool commit the gateway publishes, retained, on <prefix>/<device>/ack/<gateway_id> the seq
    # ranges of that box it holds durably; the box releases a journaled sample only then.
    enabled: bool = True
    gateway_id: str = ""              # topic level naming this gateway; "" = [mqtt] username,
                                      # else [mqtt] client_id
    every_samples: int = 16           # ack a box once it has this many unacknowledged samples ...
    max_delay_s: float = 160.0        # ... or its oldest unacknowledged one is this old
    min_interval_s: float = 1.0       # never more often than this per box (catch-up, resends)
    __repr__ = _masked_repr


@dataclass(repr=False)
class SpoolConfig:
    path: str = "/var/lib/envbox-gateway/spool.sqlite3"
    max_rows: int = 5_000_000         # ~ 100 boxes x 5.8 days; beyond it the oldest are dropped
    synchronous: str = "FULL"         # FULL (durable on power cut) or NORMAL (see docs/gateway.md)
    max_dead_letters: int = 1_000_000 # beyond it the oldest dead letters are dropped, counted
    max_dead_letter_bytes: int = 64 * 1024 * 1024   # ... and beyond this many bytes
    dead_letter_payload_bytes: int = 4096   # a dead letter keeps this much of its payload
    max_seq_ranges: int = 64          # seq ranges kept per device for completeness and acks
    conflict_window_s: float = 16 * 86400.0   # how long stored samples are remembered to refuse
                                            # a replay with other content; 0 = no check
    __repr__ = _masked_repr


@dataclass(repr=False)
class SinkConfig:
    kind: str = "influx1"             # "influx1" (/write, InfluxDB 1.x) or "influx2" (/api/v2/write)
    url: str = "http://127.0.0.1:8086"
    database: str = "envbox"          # influx1
    retention_policy: str = ""        # influx1, "" = the database's default
    username: str = ""                # influx1
    password: str = ""                # influx1
    create_database: bool = True      # influx1: CREATE DATABASE at start if missing
    org: str = ""                     # influx2
    bucket: str = "envbox"            # influx2
    token: str = ""                   # influx2
    measurement: str = "envbox"
    batch_size: int = 5000            # rows per write (InfluxData's recommended optimum)
    timeout_s: float = 10.0
    ca_file: str = ""                 # https: CA certificate(s) to verify the server ("" = system)
    gzip: bool = False                # compress write bodies (5-10x less on a metered 4G uplink)
    retry_initial_s: float = 0.5      # first back-off after a failed write
    retry_max_s: float = 60.0         # back-off ceiling
    retry_after_max_s: float = 600.0  # ceiling on a server's Retry-After
    idle_poll_s: float = 0.05         # how often the writer looks for new rows when idle
    writer_process: bool = True       # the writer in its own process (own GIL): docs/gateway.md
    __repr__ = _masked_repr


@dataclass(repr=False)
class HttpConfig:
    listen: str = ""                  # "127.0.0.1:9108" serves /metrics and /healthz; "" = off;
                                      # ":9108" = loopback
    allow_remote: bool = False        # a non-loopback address only with this (no authentication)
    timeout_s: float = 5.0            # a client that sends nothing for this long is dropped
    max_connections: int = 8          # beyond, new connections are closed at once
    __repr__ = _masked_repr


@dataclass(repr=False)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    ack: AckConfig = field(default_factory=AckConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    __repr__ = _masked_repr

    def replace(self, **sections) -> "Config":
        """Copy with some keys changed: cfg.replace(sink={"url": ...}, spool={"path": ...})."""
        new = {}
        for f in fields(self):
            sec = getattr(self, f.name)
            new[f.name] = dataclasses.replace(sec, **sections.get(f.name, {}))
        cfg = Config(**new)
        validate(cfg)
        return cfg


SECTIONS = {f.name: f.default_factory for f in fields(Config)}


def _coerce(section: str, key: str, typ, value, origin: str):
    where = f"[{section}] {key} ({origin})"
    if typ == "bool" or typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ == "int" or typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""), 0)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if typ == "float" or typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def load(path: str | os.PathLike | None = None, env: dict | None = None) -> Config:
    """Read `path` (optional), apply ENVBOX_GW_* overrides from `env` (default os.environ),
    validate, return a Config. Raises ConfigError with a message naming the key."""
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    env = os.environ if env is None else env
    built = {}
    for sec, factory in SECTIONS.items():
        obj = factory()
        given = raw.get(sec, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{sec}] must be a table")
        known = {f.name: f for f in fields(obj)}
        for key, value in given.items():
            if key not in known:
                raise ConfigError(f"[{sec}] unknown key {key!r} (known: {', '.join(sorted(known))})")
            setattr(obj, key, _coerce(sec, key, known[key].type, value, str(path)))
        for key, f in known.items():
            name = f"{ENV_PREFIX}{sec.upper()}_{key.upper()}"
            if name in env:
                setattr(obj, key, _coerce(sec, key, f.type, env[name], name))
        built[sec] = obj
    for sec in raw:
        if sec not in SECTIONS:
            raise ConfigError(f"unknown section [{sec}] (known: {', '.join(SECTIONS)})")
    cfg = Config(**built)
    validate(cfg)
    return cfg


_URL_RE = re.compile(r"^https?://[^/\s]+(/.*)?$")


def validate(cfg: Config) -> None:
    m, s, k, i = cfg.mqtt, cfg.spool, cfg.sink, cfg.ingest

    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)

    need(m.host, "[mqtt] host must not be empty")
    need(m.protocol in ("5", "3.1.1"),
         f"[mqtt] protocol must be \"5\" or \"3.1.1\", got {m.protocol!r}")
    need(0 < m.port < 65536, f"[mqtt] port {m.port} is not a TCP port")
    need(0 < len(m.client_id) <= 128 and m.client_id.isprintable(),
         "[mqtt] client_id must be 1..128 printable characters; it must be fixed so the broker "
         "keeps the gateway's session")
    levels = m.topic.split("/")
    need(levels.count("+") == 1 and "#" not in levels,
         f"[mqtt] topic {m.topic!r} must have exactly one `+` level (the device id) and no `#`")
    need(not m.topic.startswith("$"), "[mqtt] topic must not start with $ (use shared_group)")
    need(not m.shared_group or re.fullmatch(r"[^/+#\s]+", m.shared_group),
         f"[mqtt] shared_group {m.shared_group!r} must not contain / + # or spaces")
    need(m.session_expiry_s > 0,
         "[mqtt] session_expiry_s must be > 0, or the broker drops queued samples when the "
         "gateway disconnects")
    need(5 <= m.keepalive_s <= 65535, "[mqtt] keepalive_s must be 5..65535")
    need(1 <= m.receive_maximum <= 65535, "[mqtt] receive_maximum must be 1..65535")
    need(not m.password or m.username, "[mqtt] password set without username")
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        p = getattr(m, key)
        need(not p or os.path.isfile(p), f"[mqtt] {key}: file {p} not found")
    need(0 < m.reconnect_min_s <= m.reconnect_max_s,
         "[mqtt] need 0 < reconnect_min_s <= reconnect_max_s")

    need(1 <= i.commit_max_messages <= m.receive_maximum,
         "[ingest] commit_max_messages must be 1..[mqtt] receive_maximum: holding more unacked "
         "messages than the broker may send stalls delivery")
    need(0 < i.commit_max_ms <= 10000, "[ingest] commit_max_ms must be in (0, 10000]")
    need(1 <= i.commit_max_samples <= 1_000_000, "[ingest] commit_max_samples must be 1..1000000")
    need(1 <= i.queue_max_messages <= 1_000_000, "[ingest] queue_max_messages must be 1..1000000")
    need(i.queue_max_bytes >= 65536, "[ingest] queue_max_bytes must be >= 65536")
    need(i.max_future_s > 0, "[ingest] max_future_s must be > 0")
    need(i.max_past_s >= 0, "[ingest] max_past_s must be >= 0 (0 = no limit)")

    a = cfg.ack
    gid = ack_gateway_id(cfg)
    need(re.fullmatch(r"[^/+#\s]{1,64}", gid),
         f"[ack] gateway_id {gid!r} (from {'[ack] gateway_id' if a.gateway_id else '[mqtt]'}) "
         "must be 1..64 characters without / + # or spaces: it is a topic level")
    need(a.every_samples >= 1, "[ack] every_samples must be >= 1")
    need(a.max_delay_s > 0, "[ack] max_delay_s must be > 0")
    need(0 <= a.min_interval_s <= a.max_delay_s,
         "[ack] min_interval_s must be in [0, max_delay_s]")

    need(s.path, "[spool] path must not be empty")
    need(s.max_rows >= 1, "[spool] max_rows must be >= 1")
    need(s.max_dead_letters >= 1, "[spool] max_dead_letters must be >= 1")
    need(s.max_dead_letter_bytes >= 1 << 20, "[spool] max_dead_letter_bytes must be >= 1 MiB")
    need(256 <= s.dead_letter_payload_bytes <= 1 << 20,
         "[spool] dead_letter_payload_bytes must be 256..1048576")
    need(2 <= s.max_seq_ranges <= 100_000, "[spool] max_seq_ranges must be 2..100000")
    need(s.conflict_window_s >= 0, "[spool] conflict_window_s must be >= 0 (0 = off)")
    s.synchronous = s.synchronous.upper()
    need(s.synchronous in ("FULL", "NORMAL", "EXTRA"),
         f"[spool] synchronous must be FULL, EXTRA or NORMAL, got {s.synchronous!r}")

    need(k.kind in ("influx1", "influx2"), f"[sink] kind must be influx1 or influx2, got {k.kind!r}")
    need(_URL_RE.match(k.url), f"[sink] url {k.url!r} is not an http(s) URL")
    if k.kind == "influx1":
        need(k.database, "[sink] database is required for kind = influx1")
        need(not k.password or k.username, "[sink] password set without username")
    else:
        need(k.bucket, "[sink] bucket is required for kind = influx2")
    need(k.measurement, "[sink] measurement must not be empty")
    need(not k.ca_file or os.path.isfile(k.ca_file), f"[sink] ca_file: file {k.ca_file} not found")
    need(1 <= k.batch_size <= 100000, "[sink] batch_size must be 1..100000")
    need(k.timeout_s > 0, "[sink] timeout_s must be > 0")
    need(0 < k.retry_initial_s <= k.retry_max_s, "[sink] need 0 < retry_initial_s <= retry_max_s")
    need(k.retry_after_max_s > 0, "[sink] retry_after_max_s must be > 0")
    need(k.idle_poll_s > 0, "[sink] idle_poll_s must be > 0")

    h = cfg.http
    if h.listen:
        host, _, port = h.listen.rpartition(":")
        need(port.isdigit() and 0 <= int(port) < 65536,
             f"[http] listen {h.listen!r} must be HOST:PORT or :PORT")
        host = host.strip("[]") or "127.0.0.1"
        need(h.allow_remote or _is_loopback(host),
             f"[http] listen {h.listen!r} is not a loopback address: /metrics and /healthz "
             "have no authentication; set [http] allow_remote = true to serve them there anyway")
    need(h.timeout_s > 0, "[http] timeout_s must be > 0")
    need(1 <= h.max_connections <= 256, "[http] max_connections must be 1..256")


def spool_kwargs(s: SpoolConfig) -> dict:
    """Spool(path, **spool_kwargs(cfg.spool)): the spool's bounds from the configuration."""
    return {"max_rows": s.max_rows, "synchronous": s.synchronous,
            "max_dead_letters": s.max_dead_letters,
            "max_dead_letter_bytes": s.max_dead_letter_bytes,
            "dead_letter_payload_bytes": s.dead_letter_payload_bytes,
            "max_seq_ranges": s.max_seq_ranges, "conflict_window_s": s.conflict_window_s}


def ack_gateway_id(cfg: Config) -> str:
    """The topic level that names this gateway in its acknowledgements: [ack] gateway_id, else
    the broker account ([mqtt] username: the ACL lets an account publish only under its own
    name), else the client id (a broker without logins, tests)."""
    return cfg.ack.gateway_id or cfg.mqtt.username or cfg.mqtt.client_id


def warnings(cfg: Config) -> list[str]:
    """Settings that work but should not: logged at start and by check-config."""
    out = []
    k = cfg.sink
    from urllib.parse import urlsplit
    u = urlsplit(k.url)
    if u.scheme == "http" and not _is_loopback(u.hostname or "") and (
            k.password or k.token or k.username):
        out.append(f"[sink] credentials go to {u.hostname} over plain http: anyone on the way "
                   "can read them; use https:// (and [sink] ca_file for a private CA)")
    if k.ca_file and u.scheme != "https":
        out.append("[sink] ca_file is set but the url is not https://: it is not used")
    return out


def _is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_address(cfg: Config) -> tuple[str, int] | None:
    if not cfg.http.listen:
        return None
    host, _, port = cfg.http.listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
