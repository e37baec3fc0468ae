"""``[storage.scylla]``: the ScyllaDB store's settings, also read by ``chatd migrate``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatd.plugins import ConfigError, PluginContext, read_settings

CONSISTENCY = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True)
class ScyllaSettings:
    contact_points: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 9042
    keyspace: str = "chatd"
    local_dc: str = ""
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    username: str = ""
    password: str = ""
    consistency: str = "LOCAL_QUORUM"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PluginContext) -> ScyllaSettings:
        settings = read_settings(cls, table, context)
        where = f"[{context.section}]"
        rules = [
            (bool(settings.contact_points), f"{where} contact_points must name at least one host"),
            (0 < settings.port <= 65535, f"{where} port must be 1-65535"),
            (
                KEYSPACE.fullmatch(settings.keyspace) is not None,
                f"{where} keyspace must be a CQL identifier (letters, digits, _)",
            ),
            (
                settings.consistency.upper() in CONSISTENCY,
                f"{where} consistency must be a CQL consistency level (e.g. LOCAL_QUORUM)",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)
        return settings
