"""Rendezvous (highest random weight) hashing: which alive node owns a key.

Every node computes the same answer from the same alive set, with no
coordination: the owner of ``key`` is the node with the highest
``blake2b(node || key)``. When a node leaves, only its keys move (each to the
node that ranked second for it); when one joins, it takes about ``1/n`` of the
keys from the others. Measured against a 20-point ring (Tinode's) in
``../shared/notes/cluster.md``: the busiest of 3 nodes holds 1.02x the mean
share rather than 1.32x. A lookup is ``O(nodes)``, so answers are cached until
the alive set changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b


def _weight(node_id: str, key: str) -> int:
    digest = blake2b(f"{node_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, nodes: Sequence[str]) -> str:
    """The node of ``nodes`` that owns ``key`` (ties, practically impossible, by id)."""
    if not nodes:
        raise ValueError("no nodes to choose from")
    return max(nodes, key=lambda node: (_weight(node, key), node))


class Rendezvous:
    """``owner`` over one alive set, cached per key until ``reset``."""

    def __init__(self, nodes: Sequence[str] = (), *, cache: int = 200_000) -> None:
        self._nodes: tuple[str, ...] = tuple(sorted(nodes))
        self._cache: dict[str, str] = {}
        self._limit = cache

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def reset(self, nodes: Sequence[str]) -> None:
        self._nodes = tuple(sorted(nodes))
        self._cache.clear()

    def __call__(self, key: str) -> str:
        found = self._cache.get(key)
        if found is None:
            found = owner(key, self._nodes)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[key] = found
        return found
