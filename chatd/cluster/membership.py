"""What the rest of the cluster code needs to know about the nodes: who exists,
who is alive, and when that changes. Gossip (``chatd.cluster.gossip``) keeps it
true; routing and ``GET /cluster`` only read it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Status = Literal["alive", "suspect", "dead", "left"]


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    #: The advertised ``host:port`` peers dial (gossip UDP and streams TCP).
    address: str
    status: Status
    #: Raised only by the node itself, to refute a suspicion of it (SWIM).
    incarnation: int
    #: When this node first joined, epoch milliseconds.
    joined_at_ms: int
    #: What the node says of itself: ``connections``, ``load``, ... (small, JSON-safe).
    meta: Mapping[str, Any] = field(default_factory=dict)


class Membership(Protocol):
    node_id: str

    def members(self) -> list[Member]:
        """Every node known, this one included, dead ones until they are forgotten."""

    def alive(self) -> list[Member]:
        """Nodes that take traffic: ``alive`` and ``suspect`` (a suspect may be fine)."""

    def subscribe(self, on_change: Callable[[Member], None]) -> None:
        """Call ``on_change`` with the new state of a member whenever its status,
        address or incarnation changes (joins, suspicions, deaths, leaves)."""

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace what this node says of itself; spread with the next gossip."""
