"""envbox gateway: MQTT -> durable SQLite spool -> InfluxDB (see docs/gateway.md).

Public API: `Gateway(config).start()/stop()/stats()`, `config.load()`, `Spool`.
"""


def __getattr__(name):
    # Lazy, so `import envbox.gateway.config` does not pull in paho and influxdb_client.
    if name == "Gateway":
        from .daemon import Gateway
        return Gateway
    raise AttributeError(name)
