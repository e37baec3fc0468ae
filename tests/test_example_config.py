"""config.example.toml stays loadable and documents every key there is."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from chatd.config import Config, load

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def keys(obj: object, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
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
    assert load(EXAMPLE) == Config()


def test_example_documents_every_key():
    assert flatten(tomllib.loads(EXAMPLE.read_text())) == keys(Config())
