"""chatd storage in the process's memory: not durable, for tests and demos.

``create`` is the ``chatd.storage`` entry point ``memory``. Every guarantee of
the storage port holds (the conformance kit checks them), except durability:
the data lives as long as the process does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatd.plugins import PluginContext, read_settings
from chatd_storage_memory.storage import MemoryStorage, space

__all__ = ["MemorySettings", "MemoryStorage", "create"]


@dataclass(frozen=True)
class MemorySettings:
    """``[storage.memory]``."""

    #: Stores created with the same name in one process share their data (like
    #: chatd nodes on one database). Empty: one store per data directory.
    name: str = ""


def create(settings: Mapping[str, Any], context: PluginContext) -> MemoryStorage:
    """A store on the in-process data of ``name`` (or of the data directory)."""
    checked = read_settings(MemorySettings, settings, context)
    key = checked.name or f"data_dir:{context.data_dir.resolve()}"
    return MemoryStorage(space(key))
