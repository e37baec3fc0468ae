"""How server values read on screen: fixed formats, never relative to now (so a
screen reads the same in a snapshot as in use)."""

from __future__ import annotations

from typing import Any

import orjson


def when(value: Any) -> str:
    """``2026-11-27T10:30:00.123Z`` -> ``2026-11-27 10:30:00``; missing -> ``-``."""
    if not value:
        return "-"
    text = str(value)
    return text[:19].replace("T", " ") if len(text) >= 19 else text


def size(n: Any) -> str:
    """Bytes in a unit people read: ``1.5 MiB``."""
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: Any) -> str:
    """Seconds as ``3d 4h``, ``4h 05m``, ``5m 07s``."""
    try:
        s = int(float(seconds))
    except (TypeError, ValueError):
        return "-"
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {s:02d}s"


def number(value: Any, digits: int = 0) -> str:
    """A count or rate with thousands separators; missing -> ``-``."""
    if value is None or isinstance(value, bool):
        return "-"
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def flag(value: Any) -> str:
    return "yes" if value else ""


def detail(value: Any) -> str:
    """An audit detail (any JSON) on one line."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
