"""A test helper: a membership that is a fixed list the test changes by hand.

Stands in for gossip (``chatd.cluster.gossip``) in routing tests: every node's
view shares one list, and a change is seen by every node at once. ``split``
makes a split brain: the nodes on each side see those on the other as dead
(so each side closes its links across), until ``heal``.
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
        #: The nodes cut off from the others by ``split``.
        self.cut: set[str] = set()

    def add(self, node_id: str, address: str) -> None:
        self.members[node_id] = Member(node_id, address, "alive", 1, 0)
        self._tell(self.members[node_id])

    def set_status(self, node_id: str, status: Status) -> None:
        member = self.members[node_id] = replace(self.members[node_id], status=status)
        self._tell(member)

    def split(self, cut: set[str]) -> None:
        self.cut = set(cut)
        for member in list(self.members.values()):
            self._tell(member)

    def heal(self) -> None:
        self.split(set())

    def seen_by(self, node_id: str) -> list[Member]:
        """The members as ``node_id`` sees them: across a split, dead."""
        mine = node_id in self.cut
        return [
            m if (m.node_id in self.cut) == mine else replace(m, status="dead")
            for m in self.members.values()
        ]

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
        return self._cluster.seen_by(self.node_id)

    def alive(self) -> list[Member]:
        return [m for m in self.members() if m.status in ("alive", "suspect")]

    def subscribe(self, on_change: Callable[[Member], None]) -> None:
        self._cluster._subscribers.append(on_change)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        member = self._cluster.members.get(self.node_id)
        if member is not None:
            self._cluster.members[self.node_id] = replace(member, meta=dict(meta))
