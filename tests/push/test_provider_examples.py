"""config.example.toml's commented provider tables are valid once uncommented,
and document every key each provider has."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from chatd.plugins import PUSH, installed
from chatd.push.providers.apns import APNsSettings
from chatd.push.providers.fcm import FCMSettings
from chatd.push.providers.unifiedpush import UnifiedPushSettings
from chatd.push.providers.webpush import WebPushSettings
from tests.push.provider_fakes import context

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
SETTINGS = {
    "unifiedpush": UnifiedPushSettings,
    "webpush": WebPushSettings,
    "fcm": FCMSettings,
    "apns": APNsSettings,
}


def uncommented_push_tables() -> dict[str, dict]:
    """The ``# [push.<name>]`` blocks, with their ``# key = value`` lines uncommented."""
    lines, inside = [], False
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("# [push."):
            inside = True
        elif not line.startswith("#"):
            inside = False
        if inside and not line.startswith("# #"):
            lines.append(line.removeprefix("#").strip())
    return tomllib.loads("\n".join(lines)).get("push", {})


def test_every_built_in_provider_is_registered():
    assert set(SETTINGS) <= set(installed(PUSH))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_example_table_is_valid_and_documents_every_key(tmp_path, name):
    table = uncommented_push_tables()[name]
    cls = SETTINGS[name]
    assert set(table) == {f.name for f in dataclasses.fields(cls)}
    cls.read(table, context(tmp_path, name))
