# The box's identity, broker login and TLS, read from its config.json (`envbox provision` writes
# it: docs/provisioning.md). Loaded once at boot by BoardBase.load_net and unloaded after
# (compat.cold): the box does not keep this code in its heap.

def load(board, cfg, default_id="envbox-000"):
    """Set the identity and the broker's login/TLS from a config.json dict:

      device_id            the box's id, also its broker login
      broker               "HOST:PORT" (8883: the broker's TLS listener)
      mqtt_password        the box's broker password
      ca_pem               the fleet CA's certificate (PEM text): TLS, the broker's
                           certificate verified against it and its host name
      tls_server_hostname  the name the broker's certificate carries, when `broker` is an
                           address (default: the host of `broker`)
      config_key           64 hex digits: the key remote configs are signed with
      insecure             true: allowed to connect without TLS or without a login (a
                           development broker); the status message then says so

    The secrets are taken out of `cfg` (the board keeps its dict): the TLS context holds
    the parsed CA, the password and key stay only here."""
    board.device_id = (cfg.get("device_id") or default_id).encode()
    host, _, port = (cfg.get("broker") or "127.0.0.1:1883").rpartition(":")
    board.broker_host = host or "127.0.0.1"
    board.broker_port = int(port)
    pw = cfg.pop("mqtt_password", None)
    if pw:
        board.mqtt_user = board.device_id     # the login is the device id (docs/broker.md)
        board.mqtt_password = pw.encode()
    ca = cfg.pop("ca_pem", None)
    if ca:
        board.mqtt_ssl = tls_context(ca)
    board.mqtt_server_hostname = cfg.get("tls_server_hostname") or None
    key = cfg.pop("config_key", None)
    if key:
        import binascii
        board.config_key = binascii.unhexlify(key)
    board.insecure = cfg.get("insecure") is True


def tls_context(ca_pem):
    """A TLS client context that verifies the broker's certificate against the fleet's CA (PEM
    text or bytes, one certificate). MicroPython's ssl (mbedTLS) takes the CA as DER, so the
    base64 between the BEGIN/END lines is decoded here; CPython (the rpi board) takes DER too. The broker's host
    name is checked at connect time (server_hostname: firmware/mqtt.py); a CPython context
    checks it by default, MicroPython's whenever a server_hostname is given."""
    import binascii
    import ssl
    if isinstance(ca_pem, str):
        ca_pem = ca_pem.encode()
    body = b""
    inside = False
    for ln in ca_pem.split(b"\n"):
        ln = ln.strip()
        if ln.startswith(b"-----BEGIN"):
            inside = True
        elif ln.startswith(b"-----END"):
            break                   # one certificate: the fleet's CA
        elif inside:
            body += ln
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=binascii.a2b_base64(body))
    return ctx
