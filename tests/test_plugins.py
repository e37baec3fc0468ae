"""The plugin contract: each plugin checks its own table, and a wrong name lists the right ones."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chatd.app import build_services
from chatd.cli import app
from chatd.config import ConfigError, from_dict
from chatd.plugins import PluginError, installed
from tests.features.test_cli import fast_config

runner = CliRunner()


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"storage": {"sqlite": {"synchronous": "OFF"}}},
            "[storage.sqlite] synchronous must be FULL, NORMAL or EXTRA",
        ),
        ({"storage": {"sqlite": {"journal": 1}}}, "[storage.sqlite] journal: unknown key"),
        (
            {"storage": {"sqlite": {"synchronous": 1}}},
            "[storage.sqlite] synchronous must be a string",
        ),
        ({"media": {"local": {"bucket": "srv"}}}, "[media.local] bucket: unknown key"),
    ],
)
def test_a_bad_plugin_table_stops_startup_naming_the_key(tmp_path, table, message):
    config = fast_config(tmp_path, table)
    for command in (["serve"], ["user", "list"]):
        result = runner.invoke(app, [*command, "--config", config])
        assert result.exit_code == 2, result.output
        assert f"configuration error: {message}" in result.output


def test_a_bad_scylla_table_is_reported_before_any_connection(tmp_path):
    pytest.importorskip("cassandra")
    raw = {"server": {"data_dir": str(tmp_path)}, "storage": {"backend": "scylla"}}
    raw["storage"]["scylla"] = {"keyspace": "no-dashes", "contact_points": ["127.0.0.1"]}
    with pytest.raises(ConfigError, match=r"\[storage\.scylla\] keyspace must be a CQL identifier"):
        build_services(from_dict(raw))


def test_only_the_configured_plugin_reads_its_table(tmp_path):
    """Tables of other plugins are kept raw: they may belong to a plugin not installed here."""
    raw = {
        "server": {"data_dir": str(tmp_path)},
        "storage": {"backend": "sqlite", "elsewhere": {"anything": [1, 2]}},
    }
    config = from_dict(raw)
    assert config.storage.tables == {"elsewhere": {"anything": [1, 2]}}
    assert type(build_services(config).storage).__name__ == "SqliteStorage"


def test_an_unknown_plugin_lists_the_installed_ones(tmp_path):
    assert {"sqlite", "scylla"} <= set(installed("chatd.storage"))
    names = ", ".join(installed("chatd.storage"))
    config = fast_config(tmp_path, {"storage": {"backend": "postgres"}})
    for command in (["serve"], ["user", "list"]):
        result = runner.invoke(app, [*command, "--config", config])
        assert result.exit_code == 1, result.output
        assert f"no chatd.storage plugin named 'postgres' is installed (installed: {names})" in (
            result.output
        )

    media = from_dict({"server": {"data_dir": str(tmp_path)}, "media": {"store": "s3"}})
    with pytest.raises(PluginError, match=r"'s3' is installed \(installed: local"):
        build_services(media)
