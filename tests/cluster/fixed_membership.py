"""A test helper: a membership that is a fixed list the test changes by hand.

Stands in for gossip (``chatd.cluster.gossip``) in routing tests: every node's
view shares one list, and a change is seen by every node at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from chatd.cluster.membership import Member, Status


class FixedCluster:
    """The members of a test cluster; ``view(node_id)`` is one node's ``Membership``."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self._subscribers: list[Callable[[Member], None]] = []

    def add(self, node_id: str, address: str) -> None:
        self.members[node_id] = Member(node_id, address, "alive", 1, 0)
        self._tell(self.members[node_id])

    def set_status(self, node_id: str, status: Status) -> None:
        member = self.members[node_id] = replace(self.members[node_id], status=status)
        self._tell(member)

    def _tell(self, member: Member) -> None:
        for subscriber in list(self._subscribers):
            subscriber(member)

    def view(self, node_id: str) -> FixedMembership:
        return FixedMembership(self, node_id)


class FixedMembership:
    def __init__(self, cluster: FixedCluster, node_id: str) -> None:
        self._cluster = cluster
        self.node_id = node_id

    def members(self) -> list[Member]:
        return list(self._cluster.members.values())

    def alive(self) -> list[Member]:
        return [m for m in self._cluster.members.values() if m.status in ("alive", "suspect")]

    def subscribe(self, on_change: Callable[[Member], None]) -> None:
        self._cluster._subscribers.append(on_change)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        member = self._cluster.members.get(self.node_id)
        if member is not None:
            self._cluster.members[self.node_id] = replace(member, meta=dict(meta))
