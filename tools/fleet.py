"""`envbox provision BOXES.CSV --fleet DIR [--broker HOST:PORT --ca CA.pem] [--rotate [IDS]]
[--revoke IDS] [--image BOARD=FILE]`: per-device credentials for a fleet of boxes.

From a CSV of boxes (one row per box: device_id, board, modules and its network settings; the
columns are in docs/provisioning.md) it writes, into the fleet directory:

    fleet.json                the broker (HOST:PORT the boxes connect to, its TLS host name)
    ca.pem                    the fleet CA's certificate (every box verifies the broker with it)
    secrets.json      0600    each account's password and each box's config key: the only copy
                              of the plain passwords; keep it as you keep the CA's key
    mosquitto/envbox.passwd   0600  the broker's password file (mosquitto_passwd's own hashing),
                              every box and the service accounts envbox-gateway, envbox-config,
                              envbox-monitor: install it as /etc/mosquitto/envbox.passwd
    boxes/<id>/config.json    0600  the box's settings: its network, modules, login password,
                              the CA certificate, the broker's host name, its config key
    inventory.csv             device, board, modules, firmware version, when provisioned, when
                              its credentials were issued, when and what was flashed
    images.json               the MicroPython images pinned for the fleet (--image): name, size,
                              sha256; `envbox flash --micropython FILE` refuses any other file

It is idempotent: a second run with the same CSV changes no file (a password is generated once
and its hash line kept as long as it still verifies). `--rotate` issues new passwords and config
keys (all boxes, or the ids given); `--revoke` removes boxes' logins. The ACL needs no
per-device entries: config/mosquitto.acl grants boxes their topics with `pattern ... %u`, which
this command checks.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .mpybuild import REPO

BOARDS = ("esp32_lte", "pico_w", "rpi")
SERVICE_ACCOUNTS = ("envbox-gateway", "envbox-config", "envbox-monitor")
COLUMNS = ("device_id", "board", "modules", "apn", "apn_user", "apn_password", "sim_pin", "modem",
           "wifi_ssid", "wifi_password", "ntp_host", "config")
INVENTORY_COLUMNS = ("device_id", "board", "modules", "firmware_version", "provisioned_at",
                     "credentials_at", "config_sha256", "flashed_at", "flashed_firmware",
                     "micropython", "revoked_at")
ACL_PATTERNS = ("pattern write envbox/v1/%u/data", "pattern write envbox/v1/%u/status",
                "pattern read envbox/v1/%u/config", "pattern read envbox/v1/%u/ack/#")
EXIT_USAGE = 2


class UsageError(Exception):
    pass


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def check_device_id(dev: str) -> str:
    """A box's id is its broker login, its client id and a topic level."""
    b = dev.encode("ascii", "replace")
    if not 1 <= len(b) <= 32:
        raise UsageError(f"device id {dev!r}: 1..32 bytes")
    if any(c < 0x21 or c > 0x7E or c in b"/+#?:%" for c in b):
        raise UsageError(f"device id {dev!r}: printable ASCII without spaces, / + # ? : %")
    if dev.startswith("envbox-"):
        raise UsageError(f"device id {dev!r}: envbox-* names are the service accounts'")
    return dev


def check_broker(s: str) -> str:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"broker {s!r}: expected HOST:PORT")
    return s


def firmware_version() -> str:
    """The package version and a digest of what goes on a box (firmware/, boards/): two images
    with the same version string are the same code."""
    try:
        from importlib.metadata import version
        v = version("envbox")
    except Exception:  # noqa: BLE001 - not installed: the digest still tells images apart
        v = "0"
    h = hashlib.sha256()
    for d in ("firmware", "boards"):
        for p in sorted((REPO / d).rglob("*.py")):
            h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return f"{v}+{h.hexdigest()[:10]}"


# ---- the CSV ------------------------------------------------------------------------------------

def read_boxes(path: Path) -> list[dict]:
    """The CSV's rows, checked: every error (with its line) at once."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise UsageError(f"{path}: {e}") from None
    rd = csv.DictReader(io.StringIO(text))
    if rd.fieldnames is None:
        raise UsageError(f"{path}: empty")
    heads = [h.strip() for h in rd.fieldnames]
    unknown = [h for h in heads if h not in COLUMNS]
    if unknown or "device_id" not in heads or "board" not in heads:
        raise UsageError(f"{path}: columns {heads}: needs device_id and board; known: "
                         f"{', '.join(COLUMNS)}" + (f"; unknown: {unknown}" if unknown else ""))
    rows, errors, seen = [], [], {}
    for n, raw in enumerate(rd, start=2):
        r = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(r.values()):
            continue
        try:
            rows.append(box_settings(r, path.parent))
            dev = r["device_id"]
            if dev in seen:
                raise UsageError(f"device id {dev!r} also on line {seen[dev]}")
            seen[dev] = n
        except UsageError as e:
            errors.append(f"{path}:{n}: {e}")
    if errors:
        raise UsageError("\n".join(errors))
    return rows


def box_settings(r: dict, base: Path) -> dict:
    """One CSV row -> the box's own settings (config.json without the fleet's credentials)."""
    dev = check_device_id(r.get("device_id", ""))
    board = r.get("board", "")
    if board not in BOARDS:
        raise UsageError(f"board {board!r}: one of {', '.join(BOARDS)}")
    cfg: dict = {}
    extra = r.get("config")
    if extra:
        p = Path(extra) if Path(extra).is_absolute() else base / extra
        try:
            cfg = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"config {extra}: {e}") from None
        if not isinstance(cfg, dict):
            raise UsageError(f"config {extra}: a JSON object expected")
    cfg["device_id"] = dev
    if r.get("modules"):
        cfg["modules"] = [m.strip() for m in re.split(r"[,; ]+", r["modules"]) if m.strip()]
    if r.get("ntp_host"):
        cfg["ntp_host"] = r["ntp_host"]
    if board == "esp32_lte":
        for k in ("apn", "apn_user", "apn_password", "sim_pin"):
            if r.get(k):
                cfg[k] = r[k]
        cfg["modem"] = r.get("modem") or cfg.get("modem") or "sim7600"
        if cfg["modem"] not in ("sim7600", "a7670"):
            raise UsageError(f"modem {cfg['modem']!r}: sim7600 or a7670")
        if "apn" not in cfg:
            raise UsageError("esp32_lte needs apn (the SIM's access point name)")
    elif board == "pico_w":
        if r.get("wifi_ssid"):
            cfg["wifi_ssid"] = r["wifi_ssid"]
            cfg["wifi_password"] = r.get("wifi_password", "")
        if "wifi_ssid" not in cfg:
            raise UsageError("pico_w needs wifi_ssid")
    for k in ("mqtt_password", "ca_pem", "config_key", "broker", "insecure"):
        if k in cfg:
            raise UsageError(f"config {extra}: {k} is set by provisioning, not by the CSV")
    return {"device_id": dev, "board": board, "cfg": cfg}


# ---- the broker's password file ------------------------------------------------------------------

def verify_hash(line_hash: str, password: str) -> bool:
    """Does a mosquitto password-file hash belong to `password`? ($7$: PBKDF2-SHA512, mosquitto
    2.0's default; $6$: salted SHA-512, mosquitto 1.x)."""
    parts = line_hash.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            it, salt, h = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
            return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, it) == h
        if len(parts) == 4 and parts[1] == "6":
            salt, h = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            return hashlib.sha512(password.encode() + salt).digest() == h
    except (ValueError, TypeError):
        pass
    return False


def mosquitto_passwd_exe() -> str:
    exe = shutil.which("mosquitto_passwd") or ("/usr/bin/mosquitto_passwd"
                                               if os.path.exists("/usr/bin/mosquitto_passwd")
                                               else None)
    if exe is None:
        raise UsageError("mosquitto_passwd not found (Debian: apt-get install mosquitto)")
    return exe


def hash_passwords(plain: dict[str, str]) -> dict[str, str]:
    """user -> hash line, made by mosquitto_passwd -U on a private temporary file (the
    passwords never appear on a command line)."""
    if not plain:
        return {}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "plain"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            for u, pw in plain.items():
                f.write(f"{u}:{pw}\n")
        r = subprocess.run([mosquitto_passwd_exe(), "-U", str(p)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd -U failed: {r.stderr.strip()}")
        out = {}
        for line in p.read_text().splitlines():
            u, _, h = line.partition(":")
            out[u] = h
    missing = set(plain) - set(out)
    if missing:
        raise RuntimeError(f"mosquitto_passwd left out {sorted(missing)}")
    return out


def read_passwd(path: Path) -> dict[str, str]:
    out = {}
    try:
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                u, _, h = line.partition(":")
                out[u] = h
    except FileNotFoundError:
        pass
    return out


def check_acl(path: Path) -> None:
    """Boxes get their topics from `pattern` lines with %u: no per-device ACL entries."""
    try:
        lines = {" ".join(ln.split()) for ln in path.read_text().splitlines()}
    except OSError as e:
        raise UsageError(f"ACL {path}: {e}") from None
    missing = [p for p in ACL_PATTERNS if p not in lines]
    if missing:
        raise UsageError(f"ACL {path} lacks {missing}: boxes would need per-device entries; "
                         "use config/mosquitto.acl")


# ---- files ---------------------------------------------------------------------------------------

def write_if_changed(path: Path, data: str, mode: int = 0o644) -> bool:
    """Write `data` unless the file already holds it (idempotent runs change no file)."""
    try:
        if path.read_text() == data:
            if (path.stat().st_mode & 0o777) != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def dumps(d) -> str:
    return json.dumps(d, indent=1, sort_keys=True) + "\n"


class Fleet:
    """The fleet directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.settings = self._json("fleet.json", {})
        self.secrets = self._json("secrets.json", {"accounts": {}})
        self.images = self._json("images.json", {})
        self.inventory = self._read_inventory()

    def _json(self, name, default):
        try:
            return json.loads((self.root / name).read_text())
        except FileNotFoundError:
            return default
        except ValueError as e:
            raise UsageError(f"{self.root / name}: {e}") from None

    # paths
    @property
    def passwd_path(self) -> Path:
        return self.root / "mosquitto" / "envbox.passwd"

    def config_path(self, dev: str) -> Path:
        return self.root / "boxes" / dev / "config.json"

    def box_config(self, dev: str) -> dict:
        try:
            return json.loads(self.config_path(dev).read_text())
        except FileNotFoundError:
            raise UsageError(f"{dev}: not provisioned in {self.root} (envbox provision)") from None

    def account(self, name: str) -> dict:
        a = self.secrets["accounts"].get(name)
        if a is None:
            raise UsageError(f"{name}: no such account in {self.root / 'secrets.json'}")
        return a

    # the inventory
    def _read_inventory(self) -> dict[str, dict]:
        p = self.root / "inventory.csv"
        try:
            with open(p, newline="") as f:
                return {r["device_id"]: r for r in csv.DictReader(f)}
        except FileNotFoundError:
            return {}

    def save_inventory(self) -> bool:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=INVENTORY_COLUMNS, lineterminator="\n")
        w.writeheader()
        for dev in sorted(self.inventory):
            w.writerow({k: self.inventory[dev].get(k, "") for k in INVENTORY_COLUMNS})
        return write_if_changed(self.root / "inventory.csv", buf.getvalue())

    def save(self) -> list[str]:
        changed = []
        for name, d, mode in (("fleet.json", self.settings, 0o644),
                              ("secrets.json", self.secrets, 0o600),
                              ("images.json", self.images, 0o644)):
            if d and write_if_changed(self.root / name, dumps(d), mode):
                changed.append(name)
        if self.save_inventory():
            changed.append("inventory.csv")
        return changed


def pin_image(fleet: Fleet, board: str, path: Path) -> dict:
    """Record a MicroPython image the technician downloaded as the fleet's image for `board`
    (from then on `envbox flash --micropython` takes only a file with this sha256)."""
    from .flashimg import check_image_format, micropython_version_of
    if board not in ("esp32_lte", "pico_w"):
        raise UsageError(f"--image {board}: esp32_lte or pico_w")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--image {path}: {e}") from None
    check_image_format(board, path.name, data)
    pin = {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "micropython": micropython_version_of(path.name)}
    fleet.images[board] = pin
    return pin


def provision(fleet: Fleet, rows: list[dict], broker: str | None = None,
              ca_pem: str | None = None, tls_name: str | None = None,
              rotate: set[str] | None = None, revoke: set[str] | None = None,
              acl: Path | None = None, when: str | None = None) -> list[dict]:
    """Bring the fleet directory in line with `rows`; return one report per account."""
    when = when or now_iso()
    rotate = rotate or set()
    revoke = revoke or set()
    check_acl(acl or REPO / "config" / "mosquitto.acl")
    fleet.root.mkdir(parents=True, exist_ok=True, mode=0o700)    # it holds the fleet's secrets
    st = fleet.settings
    if broker:
        st["broker"] = check_broker(broker)
    if tls_name is not None:
        st["tls_server_hostname"] = tls_name
    if "broker" not in st:
        raise UsageError("--broker HOST:PORT is needed on the first run")
    if ca_pem is not None:
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise UsageError("--ca: not a PEM certificate")
        write_if_changed(fleet.root / "ca.pem", ca_pem)
    try:
        ca = (fleet.root / "ca.pem").read_text()
    except FileNotFoundError:
        raise UsageError("--ca CA.pem (the fleet CA's certificate) is needed on the first "
                         "run") from None
    accounts = fleet.secrets.setdefault("accounts", {})
    ids = {r["device_id"] for r in rows}
    unknown = (rotate - {"*"}) - ids - set(accounts)
    if unknown:
        raise UsageError(f"--rotate: unknown {sorted(unknown)}")
    unknown = revoke - set(accounts) - ids
    if unknown:
        raise UsageError(f"--revoke: unknown {sorted(unknown)}")
    if revoke & ids:
        raise UsageError(f"--revoke {sorted(revoke & ids)}: still in the CSV (remove the rows)")
    reports = []

    def issue(name, with_key):
        a = {"password": secrets.token_urlsafe(24), "issued_at": when}
        if with_key:
            a["config_key"] = secrets.token_hex(32)
        accounts[name] = a

    for name in SERVICE_ACCOUNTS:
        if name not in accounts:
            issue(name, False)
            reports.append({"account": name, "action": "created"})
        elif name in rotate:
            issue(name, False)
            reports.append({"account": name, "action": "rotated"})
    fw = firmware_version()
    for r in rows:
        dev = r["device_id"]
        action = "unchanged"
        if dev not in accounts:
            issue(dev, True)
            action = "created"
        elif dev in rotate or "*" in rotate:
            issue(dev, True)
            action = "rotated"
        a = accounts[dev]
        cfg = dict(r["cfg"])
        cfg["broker"] = st["broker"]
        if st.get("tls_server_hostname"):
            cfg["tls_server_hostname"] = st["tls_server_hostname"]
        cfg["mqtt_password"] = a["password"]
        cfg["config_key"] = a["config_key"]
        cfg["ca_pem"] = ca
        text = dumps(cfg)
        if write_if_changed(fleet.config_path(dev), text, 0o600) and action == "unchanged":
            action = "updated"
        inv = fleet.inventory.setdefault(dev, {"device_id": dev, "provisioned_at": when})
        inv.update({"board": r["board"], "modules": " ".join(cfg.get("modules", [])),
                    "credentials_at": a["issued_at"],
                    "config_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
                    "revoked_at": ""})
        if not inv.get("flashed_at"):
            inv["firmware_version"] = fw        # what `envbox flash` would put on it now
        reports.append({"device": dev, "board": r["board"], "action": action})
    for dev in sorted(revoke):
        accounts.pop(dev, None)
        inv = fleet.inventory.get(dev)
        if inv is not None:
            inv["revoked_at"] = when
        try:
            fleet.config_path(dev).unlink()
        except FileNotFoundError:
            pass
        reports.append({"device": dev, "action": "revoked"})
    # the broker's password file: every account; a line that still verifies is kept as it is
    old = read_passwd(fleet.passwd_path)
    keep = {u: h for u, h in old.items() if u in accounts
            and verify_hash(h, accounts[u]["password"])}
    fresh = hash_passwords({u: a["password"] for u, a in accounts.items() if u not in keep})
    lines = {**keep, **fresh}
    write_if_changed(fleet.passwd_path,
                     "".join(f"{u}:{lines[u]}\n" for u in sorted(lines)), 0o600)
    fleet.save()
    return reports


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="envbox provision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="?", help="the boxes (columns: " + ", ".join(COLUMNS) + ")")
    p.add_argument("--fleet", default="fleet", help="the fleet directory (default ./fleet)")
    p.add_argument("--broker", help="HOST:PORT the boxes connect to (the broker's TLS "
                                    "listener, e.g. mqtt.example.org:8883)")
    p.add_argument("--ca", help="the fleet CA's certificate (PEM)")
    p.add_argument("--tls-server-hostname",
                   help="the name on the broker's certificate, when --broker is an address")
    p.add_argument("--rotate", nargs="?", const="*", default="",
                   help="new passwords and config keys: every box, or the ids given "
                        "(comma-separated; service accounts too)")
    p.add_argument("--revoke", default="", help="remove these boxes' logins (comma-separated)")
    p.add_argument("--image", action="append", default=[], metavar="BOARD=FILE",
                   help="pin a downloaded MicroPython image for a board (esp32_lte: .bin, "
                        "pico_w: .uf2)")
    p.add_argument("--acl", help="the broker ACL to check (default config/mosquitto.acl)")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        fleet = Fleet(a.fleet)
        for spec in a.image:
            board, sep, f = spec.partition("=")
            if not sep:
                raise UsageError(f"--image {spec!r}: BOARD=FILE")
            pin = pin_image(fleet, board, Path(f))
            print(json.dumps({"pinned": board, **pin}, sort_keys=True))
        if a.csv is None:
            if not a.image:
                raise UsageError("a CSV of boxes is needed (or --image only)")
            fleet.save()
            return 0
        rows = read_boxes(Path(a.csv))
        ca = None
        if a.ca:
            try:
                ca = Path(a.ca).read_text()
            except OSError as e:
                raise UsageError(f"--ca {a.ca}: {e}") from None
        split = lambda s: {x.strip() for x in s.split(",") if x.strip()}  # noqa: E731
        reports = provision(fleet, rows, broker=a.broker, ca_pem=ca,
                            tls_name=a.tls_server_hostname,
                            rotate=split(a.rotate), revoke=split(a.revoke),
                            acl=Path(a.acl) if a.acl else None)
    except UsageError as e:
        print(f"envbox provision: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as e:
        print(f"envbox provision: {e}", file=sys.stderr)
        return 1
    for r in reports:
        print(json.dumps(r, sort_keys=True))
    counts: dict[str, int] = {}
    for r in reports:
        counts[r["action"]] = counts.get(r["action"], 0) + 1
    print(json.dumps({"fleet": str(fleet.root), "passwd": str(fleet.passwd_path),
                      "boxes": len(rows), **counts}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
