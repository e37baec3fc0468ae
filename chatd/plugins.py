"""Finding implementations through Python entry points, built-ins included.

A storage backend (or, later, a push provider) is named in the configuration
and looked up in its entry-point group, so a third-party plugin installed with
pip is found exactly the way the built-in SQLite store is.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

STORAGE = "chatd.storage"
MEDIA = "chatd.media"


class PluginError(LookupError):
    pass


def installed(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def load(group: str, name: str) -> Any:
    """The object an entry point names; an unknown name lists the installed ones."""
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    names = ", ".join(installed(group)) or "none"
    raise PluginError(f"no {group} plugin named {name!r} is installed (installed: {names})")
