"""The plugin contract: entry-point groups, each naming a factory ``create(settings, context)``.

A storage backend, a media store or (next) a push provider is named in the
configuration and looked up in its entry-point group, so a third-party plugin
installed with pip is found exactly the way the built-in SQLite store is. The
factory gets its own raw TOML table (``[storage.<name>]``, ``[media.<name>]``),
validates it itself (``read_settings`` does the usual part), and returns the
unopened object; chatd opens and closes it. docs/plugins.md is the guide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from chatd.config import ConfigError, read_table

__all__ = [
    "MEDIA",
    "PUSH",
    "STORAGE",
    "ConfigError",
    "PluginContext",
    "PluginError",
    "create",
    "installed",
    "load",
    "read_settings",
]

STORAGE = "chatd.storage"
MEDIA = "chatd.media"
PUSH = "chatd.push"

T = TypeVar("T")
#: ``observe(operation, seconds)``: a latency sample for chatd's metrics.
Observer = Callable[[str, float], None]


def _ignore(operation: str, seconds: float) -> None:
    """The observer when nobody collects metrics (a CLI command, a test)."""


@dataclass(frozen=True)
class PluginContext:
    """What chatd tells a plugin factory besides its settings."""

    #: The plugin's table, for error messages: ``"storage.sqlite"``.
    section: str
    #: chatd's data directory (``[server] data_dir``); a plugin keeps files under it.
    data_dir: Path
    #: This node's name (``[server] node_id``, or the one kept in the data directory).
    node_id: str
    #: Where to report the latency of operations, if the plugin measures any.
    observe: Observer = field(default=_ignore)


class PluginError(LookupError):
    """No plugin of that name is installed (the message lists those that are)."""


def installed(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load(group: str, name: str) -> Any:
    """The factory an entry point names; an unknown name lists the installed ones."""
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    names = ", ".join(installed(group)) or "none"
    raise PluginError(f"no {group} plugin named {name!r} is installed (installed: {names})")


def create(group: str, name: str, settings: Mapping[str, Any], context: PluginContext) -> Any:
    """Find plugin ``name`` of ``group`` and call its factory."""
    return load(group, name)(dict(settings), context)


def read_settings(cls: type[T], settings: Mapping[str, Any], context: PluginContext) -> T:
    """The frozen dataclass ``cls`` from a plugin's raw table, defaults filled in.

    An unknown key or a value of the wrong type raises ``ConfigError`` naming
    the key as ``[<section>] <key>``, like every other configuration error.
    """
    return read_table(cls, dict(settings), context.section)
