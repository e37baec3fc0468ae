"""config.example.toml stays loadable and documents every key there is, plugins' included."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from chatd.config import Config, load
from chatd.plugins import PluginContext

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def builtin_settings() -> dict[str, type]:
    """``section -> settings class`` of every built-in plugin that has settings."""
    pytest.importorskip("cassandra")
    from chatd.media.local import LocalSettings
    from chatd.storage.scylla.settings import ScyllaSettings
    from chatd.storage.sqlite.settings import SqliteSettings

    return {
        "storage.sqlite": SqliteSettings,
        "storage.scylla": ScyllaSettings,
        "media.local": LocalSettings,
    }


def keys(obj: object, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.metadata.get("plugin_tables"):
            continue  # [section.<plugin>]: the plugin's own keys, below
        if dataclasses.is_dataclass(value):
            found |= keys(value, f"{prefix}{f.name}.")
        else:
            found.add(prefix + f.name)
    return found


def flatten(table: dict, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in table.items():
        if isinstance(value, dict):
            found |= flatten(value, f"{prefix}{key}.")
        else:
            found.add(prefix + key)
    return found


def test_example_loads_and_equals_the_defaults():
    example = load(EXAMPLE)
    core = dataclasses.replace(
        example,
        storage=dataclasses.replace(example.storage, tables={}),
        media=dataclasses.replace(example.media, tables={}),
    )
    assert core == Config()
    for section, cls in builtin_settings().items():
        group, _, name = section.partition(".")
        table = getattr(example, group).tables.get(name, {})
        context = PluginContext(section, Path("."), "node")
        assert cls.read(table, context) == cls()


def test_example_documents_every_key():
    plugin_keys = {
        f"{section}.{f.name}"
        for section, cls in builtin_settings().items()
        for f in dataclasses.fields(cls)
    }
    assert flatten(tomllib.loads(EXAMPLE.read_text())) == keys(Config()) | plugin_keys
