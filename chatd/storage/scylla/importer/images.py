"""Rows as they read back (``Image``): what the verification compares.

The expected side is computed from ``Put``s (``images``), the found side from a
scan of the keyspace (``Importer.scan``); both merge a row's cells and drop
unset ones, so they compare equal exactly when the same cells are stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from chatd.storage.scylla.importer.tables import TABLES, Put


class Image(NamedTuple):
    """A row as it reads back: key values and its non-null cells, in table order."""

    table: str
    static: bool
    key: tuple[Any, ...]
    cells: tuple[tuple[str, Any], ...]

    @property
    def group(self) -> str:
        """The chat the row belongs to ("" when the table has no chat column)."""
        table = TABLES[self.table]
        if table.group is None:
            return ""
        cols = table.partition if self.static else table.key
        if table.group in cols:
            return str(self.key[cols.index(table.group)])
        return str(dict(self.cells).get(table.group, ""))


def images(puts: Iterable[Put]) -> list[Image]:
    """What ``puts`` leave in the tables, one image per row (cells of a row merged)."""
    rows: dict[tuple[str, bool, tuple[Any, ...]], dict[str, Any]] = {}
    for p in puts:
        table = TABLES[p.table]
        cols = table.columns(p.static)
        width = len(table.partition) if p.static else len(table.key)
        cells = rows.setdefault((p.table, p.static, p.values[:width]), {})
        for col, value in zip(cols[width:], p.values[width:], strict=True):
            if value is not None:
                cells[col] = value
    out = []
    for (name, static, key), cells in rows.items():
        order = TABLES[name].statics if static else TABLES[name].regular
        out.append(Image(name, static, key, tuple((c, cells[c]) for c in order if c in cells)))
    return out


def plain(value: Any) -> Any:
    """A read value as the importer wrote it (sets come back as sorted sets)."""
    if isinstance(value, (set, frozenset)) or type(value).__name__ == "SortedSet":
        return sorted(value)
    return value
