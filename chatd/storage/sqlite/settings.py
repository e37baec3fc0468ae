"""``[storage.sqlite]``: the SQLite store's settings, checked when it is the configured backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatd.plugins import ConfigError, PluginContext, read_settings

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


@dataclass(frozen=True)
class SqliteSettings:
    synchronous: str = "FULL"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PluginContext) -> SqliteSettings:
        settings = read_settings(cls, table, context)
        if settings.synchronous.upper() not in SYNCHRONOUS:
            raise ConfigError(f"[{context.section}] synchronous must be FULL, NORMAL or EXTRA")
        return cls(synchronous=settings.synchronous.upper())
