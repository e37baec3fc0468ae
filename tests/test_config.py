"""Configuration parsing: defaults, types and value checks name the key."""

from __future__ import annotations

import pytest

from chatd.config import Config, ConfigError, from_dict, is_loopback


def test_defaults_need_no_file():
    config = Config()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.server.data_dir == "./chatd-data"
    assert config.storage.backend == "sqlite" and config.auth.registration == "open"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"server": {"prot": 1}}, "[server] prot: unknown key"),
        ({"nope": {}}, "nope: unknown key"),
        ({"server": {"port": "80"}}, "[server] port must be an integer"),
        ({"server": {"port": True}}, "[server] port must be an integer"),
        ({"server": {"port": 70000}}, "[server] port must be 0-65535"),
        (
            {"auth": {"registration": "sometimes"}},
            "[auth] registration must be open, invite or closed",
        ),
        ({"limits": {"max_frame_bytes": 10}}, "[limits] max_frame_bytes must exceed"),
        ({"server": {"allowed_origins": "x"}}, "[server] allowed_origins must be a list of str"),
        ({"storage": {"engine": "x"}}, "[storage] engine: unknown key (known: backend, or a"),
        ({"media": {"root": "/srv"}}, "[media] root: unknown key"),
        ({"server": "x"}, "[server] must be a table"),
    ],
)
def test_bad_values_name_their_key(raw, message):
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert message in str(err.value)


def test_plugin_tables_pass_through_raw_for_their_plugin():
    config = from_dict({"storage": {"backend": "x", "x": {"a": 1}, "y": {"b": [2]}}})
    assert config.storage.settings() == {"a": 1}
    assert config.storage.tables == {"x": {"a": 1}, "y": {"b": [2]}}
    assert from_dict({"media": {"local": {"c": "d"}}}).media.settings() == {"c": "d"}
    assert Config().storage.settings() == {} and Config().media.settings() == {}


def test_integers_are_accepted_for_numbers():
    assert from_dict({"limits": {"messages_per_second": 3}}).limits.messages_per_second == 3.0


def test_flags_override_the_file():
    config = from_dict({"server": {"port": 9000}}).with_server(port=9001, host=None)
    assert config.server.port == 9001 and config.server.host == "127.0.0.1"


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("chat.example.org")
