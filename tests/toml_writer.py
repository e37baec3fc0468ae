"""Configuration files for chatd processes the tests start (the CLI, ``chatd serve``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(data: Mapping[str, Any], prefix: str = "") -> str:
    """``data`` as TOML: its scalars first, then a ``[table]`` per nested mapping."""
    lines = [f"{key} = {_value(v)}" for key, v in data.items() if not isinstance(v, Mapping)]
    out = "\n".join(lines) + "\n" if lines else ""
    for key, value in data.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{key}" if prefix else key
            out += f"\n[{name}]\n" + toml_text(value, name)
    return out


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text(data))
    return path
