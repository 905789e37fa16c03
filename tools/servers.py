"""Real servers as child processes: mosquitto, InfluxDB 1.x and VictoriaMetrics.

Each runs on a free 127.0.0.1 port with its data in a directory the caller owns. The demo and the
tests use these; nothing here assumes a system service. Every server can be stopped, killed,
paused and restarted on the same port and data, so tests can break them on purpose.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
BROKER_CONF_TEMPLATE = REPO_DIR / "config" / "mosquitto.conf"
BROKER_ACL = REPO_DIR / "config" / "mosquitto.acl"
GATEWAY_USER = "envbox-gateway"     # the accounts config/mosquitto.acl names
CONFIG_USER = "envbox-config"
MONITOR_USER = "envbox-monitor"


class ServerError(RuntimeError):
    pass


def _ephemeral_low() -> int:
    """The lowest port the kernel gives to outgoing connections (Linux: 32768 by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port free now, below the ephemeral range: a port the kernel picked for
    us (bind to 0) is one it also gives to outgoing connections, so a server started on it a
    moment later could find it taken by a client's socket (a gateway restarted in a test after
    hundreds of HTTP writes failed so: "Address already in use")."""
    low = _ephemeral_low()
    if low > 12000:
        rnd = random.SystemRandom()
        for _ in range(200):
            port = rnd.randrange(10000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(cond, timeout=10.0, interval=0.05, what="condition"):
    """Poll `cond()` until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below if we time out
            last_exc = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def _find(prog: str, *extra: str) -> str:
    for cand in (prog, *extra):
        p = shutil.which(cand) or (cand if os.path.exists(cand) else None)
        if p:
            return p
    raise ServerError(f"{prog} not found: run `make setup` (installs the Debian packages)")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    name = "server"

    def __init__(self, workdir: str | os.PathLike, port: int | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / f"{self.name}.log"

    # subclasses: argv(), ready()
    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def start(self, timeout: float = 30.0) -> "Server":
        if self.proc and self.proc.poll() is None:
            return self
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        try:
            eventually(lambda: self.proc.poll() is None and self.ready(), timeout,
                       what=f"{self.name} on port {self.port}")
        except TimeoutError:
            self.stop()
            raise ServerError(f"{self.name} did not start; log {self.log_path}:\n"
                              + self.log_tail())
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.proc:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        eventually(lambda: not _port_open(self.port), 10, what=f"{self.name} port to close")

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def broker_acl(gateways=(GATEWAY_USER,)) -> str:
    """config/mosquitto.acl with one gateway block per account in `gateways`: the shipped block
    is for GATEWAY_USER; further gateways get a copy under their own name (as docs/broker.md
    tells an operator to do)."""
    text = BROKER_ACL.read_text()
    lines = text.splitlines()
    start = lines.index(f"user {GATEWAY_USER}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("user ")),
               len(lines))
    block = "\n".join(lines[start:end]).rstrip()
    out = text.rstrip() + "\n"
    for gw in gateways:
        if gw != GATEWAY_USER:
            out += "\n" + block.replace(GATEWAY_USER, gw) + "\n"
    return out


class Mosquitto(Server):
    """mosquitto with the product's broker configuration (config/mosquitto.conf).

    The shipped file is used as it is, with its own ports and paths replaced: the plaintext
    loopback listener on `port`, the TLS listener on `tls_port` with `tls` = (certificate file,
    key file) or, without `tls`, left out; the log file, password file and ACL in `workdir`.
    `users` (name -> password) turns on the product's authentication: a password file made with
    mosquitto_passwd and config/mosquitto.acl (with a block for each account in `gateways`,
    see broker_acl). Without it the broker allows anonymous clients (tests of other things; the
    client id then cannot be the login). `extra_conf` lines are appended last.
    """

    name = "mosquitto"

    def __init__(self, workdir, port=None, extra_conf: str = "", template: Path | None = None,
                 users: dict | None = None, gateways=(GATEWAY_USER,), tls=None,
                 tls_port: int | None = None):
        super().__init__(workdir, port)
        self.gateways = tuple(gateways)
        self.extra_conf = extra_conf
        self.template = template or BROKER_CONF_TEMPLATE
        self.conf_path = self.dir / "mosquitto.conf"
        self.users = dict(users or {})
        self.tls = tls
        self.tls_port = (tls_port or free_port()) if tls else None

    def write_passwords(self) -> Path:
        path = self.dir / "passwd"
        path.write_text("")
        exe = _find("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        for user, pw in self.users.items():
            subprocess.run([exe, "-b", str(path), user, pw], check=True, capture_output=True)
        path.chmod(0o600)
        return path

    def add_user(self, user: str, password: str) -> None:
        """Add or change a login; a running broker rereads its files on SIGHUP."""
        self.users[user] = password
        self.write_passwords()
        if self.running():
            os.kill(self.proc.pid, signal.SIGHUP)

    def render(self) -> str:
        """The configuration file: the shipped one with this broker's ports and paths."""
        text = self.template.read_text()
        if self.users:
            acl = self.dir / "acl"
            acl.write_text(broker_acl(self.gateways))
            auth = {"password_file": str(self.write_passwords()), "acl_file": str(acl)}
        else:
            auth = {}
        tls = {"certfile": str(self.tls[0]), "keyfile": str(self.tls[1])} if self.tls else {}
        seen = set()

        def sub(m: re.Match) -> str:
            key, value = m.group(1), m.group(2)
            seen.add((key, value))
            if key == "listener":
                if value == "1883 127.0.0.1":
                    return f"listener {self.port} 127.0.0.1"
                if value == "8883":
                    return f"listener {self.tls_port}" if self.tls else ""
                raise ServerError(f"{self.template}: unexpected listener {value!r}")
            if key == "log_dest":
                return f"log_dest file {self.log_path}"
            if key in ("password_file", "acl_file"):
                return f"{key} {auth[key]}" if auth else ""
            if key == "use_username_as_clientid":     # anonymous clients have no user name
                return f"{key} {value}" if auth else f"{key} false"
            return f"{key} {tls[key]}" if tls else ""     # certfile, keyfile
        text = re.sub(r"(?m)^(listener|log_dest|password_file|acl_file|certfile|keyfile"
                      r"|use_username_as_clientid) (.*)$", sub, text)
        if not {("listener", "1883 127.0.0.1"), ("listener", "8883")} <= seen:
            raise ServerError(f"{self.template}: the loopback and TLS listeners are not where "
                              "tools/servers.py expects them")
        (self.dir / "data").mkdir(exist_ok=True)
        # Started as root, mosquitto drops to the `mosquitto` user and then cannot write its
        # persistence file into our (root-owned) directory: stay the user that started it.
        user = "user root\n" if os.geteuid() == 0 else ""
        anon = "" if self.users else "allow_anonymous true\n"
        return (f"# generated from {self.template.name}\n" + text
                + f"\npersistence_location {self.dir / 'data'}/\n"
                + user + anon + self.extra_conf + "\n")

    def write_conf(self) -> None:
        self.conf_path.write_text(self.render())

    def ready(self) -> bool:
        return _port_open(self.port) and (not self.tls or _port_open(self.tls_port))

    def argv(self):
        self.write_conf()
        return [_find("mosquitto", "/usr/sbin/mosquitto"), "-c", str(self.conf_path)]

    def stop(self, timeout: float = 10.0) -> None:
        # mosquitto saves its persistence file on SIGTERM
        super().stop(timeout)


class InfluxDB1(Server):
    """Debian's InfluxDB 1.6.7 (1.x HTTP API: /write, /query, /ping). `tls` = (certificate
    file, key file) serves https instead of http."""

    name = "influxdb"

    def __init__(self, workdir, port=None, tls=None):
        super().__init__(workdir, port)
        self.rpc_port = free_port()
        self.conf_path = self.dir / "influxdb.conf"
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _urlopen(self, url, data=None, timeout=30):
        ctx = None
        if self.tls:                 # the launcher's own checks need no verification
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return urllib.request.urlopen(url, data=data, timeout=timeout, context=ctx)

    def argv(self):
        d = self.dir
        self.conf_path.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false
[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
{self._https()}[continuous_queries]
  enabled = false
""")
        return [_find("influxd", "/usr/bin/influxd"), "-config", str(self.conf_path)]

    def _https(self) -> str:
        if not self.tls:
            return ""
        return (f'  https-enabled = true\n  https-certificate = "{self.tls[0]}"\n'
                f'  https-private-key = "{self.tls[1]}"\n')

    def ready(self) -> bool:
        try:
            with self._urlopen(self.url + "/ping", timeout=0.5) as r:
                return r.status == 204
        except (OSError, urllib.error.URLError):
            return False

    def query(self, q: str, db: str | None = None, epoch: str = "s") -> dict:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with self._urlopen(self.url + "/query", data=data, timeout=30) as r:
            import json
            return json.load(r)

    def create_db(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def rows(self, q: str, db: str) -> list[dict]:
        """Run an InfluxQL query; return the rows of all series as dicts."""
        out = []
        res = self.query(q, db)
        for r in res.get("results", []):
            if "error" in r:
                raise ServerError(r["error"])
            for s in r.get("series", []):
                cols = s["columns"]
                for v in s["values"]:
                    row = dict(zip(cols, v))
                    row.update(s.get("tags") or {})
                    out.append(row)
        return out


class VictoriaMetrics(Server):
    """Debian's VictoriaMetrics: takes line protocol on /write and /api/v2/write."""

    name = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self):
        return [_find("victoria-metrics", "/usr/bin/victoria-metrics"),
                f"-storageDataPath={self.dir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-loggerLevel=ERROR"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def flush(self) -> None:
        """Make just-written samples searchable (VictoriaMetrics buffers for about a second)."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=30) as r:
            r.read()

    def export(self, match: str = '{__name__!=""}', start: int | None = None,
               end: int | None = None) -> list[dict]:
        """Raw samples as JSON lines from /api/v1/export (timestamps in ms)."""
        import json
        params = {"match[]": match}
        if start is not None:
            params["start"] = str(start)
        if end is not None:
            params["end"] = str(end)
        url = self.url + "/api/v1/export?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=60) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

