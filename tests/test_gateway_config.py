"""Gateway configuration: the shipped sample parses, overrides apply, bad values are refused with a
message naming the key, secrets never show in repr."""

from pathlib import Path

import pytest

from envbox.gateway import config as gwconfig
from envbox.gateway.config import ConfigError

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "config" / "gateway.toml"


def test_sample_config_parses_and_equals_the_defaults():
    # The sample documents every key with its default value; drift between the two is a bug.
    cfg = gwconfig.load(SAMPLE, env={})
    assert repr(cfg) == repr(gwconfig.Config())


def test_sample_config_mentions_every_key():
    text = SAMPLE.read_text()
    for sec, factory in gwconfig.SECTIONS.items():
        assert f"[{sec}]" in text
        for f in gwconfig.fields(factory()):
            assert f"\n{f.name} = " in text, f"[{sec}] {f.name} is not documented in the sample"


def test_environment_overrides_win_and_are_typed(tmp_path):
    p = tmp_path / "gw.toml"
    p.write_text('[mqtt]\nport = 1884\n[sink]\nkind = "influx2"\ntoken = "from-file"\n')
    cfg = gwconfig.load(p, env={"ENVBOX_GW_MQTT_PORT": "2883", "ENVBOX_GW_SINK_TOKEN": "s3cret",
                                "ENVBOX_GW_MQTT_TLS": "yes", "ENVBOX_GW_SINK_TIMEOUT_S": "2.5"})
    assert cfg.mqtt.port == 2883
    assert cfg.mqtt.tls is True
    assert cfg.sink.token == "s3cret"
    assert cfg.sink.timeout_s == 2.5


def test_secrets_are_masked_in_repr(tmp_path):
    p = tmp_path / "gw.toml"
    p.write_text('[mqtt]\nusername = "gw"\npassword = "mqtt-pass-123"\n'
                 '[sink]\nusername = "u"\npassword = "influx-pass-456"\ntoken = "tok-789"\n')
    cfg = gwconfig.load(p, env={})
    text = repr(cfg) + str(cfg) + repr(cfg.sink) + repr(cfg.mqtt)
    for secret in ("mqtt-pass-123", "influx-pass-456", "tok-789"):
        assert secret not in text
    assert cfg.sink.token == "tok-789"


@pytest.mark.parametrize("toml,needle", [
    ('[mqtt]\nport = 70000\n', "[mqtt] port"),
    ('[mqtt]\nport = "abc"\n', "[mqtt] port"),
    ('[mqtt]\ntopic = "envbox/v1/#"\n', "[mqtt] topic"),
    ('[mqtt]\ntopic = "envbox/+/+/data"\n', "[mqtt] topic"),
    ('[mqtt]\nsession_expiry_s = 0\n', "session_expiry_s"),
    ('[mqtt]\nprotocol = "3.1"\n', "protocol"),
    ('[mqtt]\nshared_group = "a/b"\n', "shared_group"),
    ('[mqtt]\nclient_id = ""\n', "client_id"),
    ('[mqtt]\nbogus = 1\n', "unknown key 'bogus'"),
    ('[bogus]\nx = 1\n', "unknown section [bogus]"),
    ('[sink]\nkind = "influx3"\n', "[sink] kind"),
    ('[sink]\nurl = "127.0.0.1:8086"\n', "[sink] url"),
    ('[sink]\nkind = "influx2"\nbucket = ""\n', "bucket"),
    ('[sink]\nbatch_size = 0\n', "batch_size"),
    ('[spool]\nsynchronous = "OFF"\n', "synchronous"),
    ('[spool]\nmax_rows = 0\n', "max_rows"),
    ('[ingest]\ncommit_max_messages = 2000\n', "commit_max_messages"),
    ('[http]\nlisten = "nope"\n', "[http] listen"),
    ('[mqtt\n', "config file"),
])
def test_bad_values_are_refused_with_the_key_named(tmp_path, toml, needle):
    p = tmp_path / "gw.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as e:
        gwconfig.load(p, env={})
    assert needle in str(e.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as e:
        gwconfig.load(None, env={"ENVBOX_GW_SINK_BATCH_SIZE": "many"})
    assert "ENVBOX_GW_SINK_BATCH_SIZE" in str(e.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        gwconfig.load(tmp_path / "missing.toml", env={})


def test_shared_group_builds_the_share_subscription():
    cfg = gwconfig.Config().replace(mqtt={"shared_group": "gws"})
    assert cfg.mqtt.subscription() == "$share/gws/envbox/v1/+/data"
    assert cfg.mqtt.device_index() == 2
