"""Chat owners over the cluster: ``Owners`` for the core, on ``ClusterNode`` calls.

The owner of a chat is the alive node that rendezvous hashing of its id picks.
While the alive set is changing, two nodes may briefly disagree on it; a
forwarded write is then run by whichever node received it (never forwarded
twice), and the store still numbers it right (seq is unique and gap-free on
every backend). See docs/architecture.md, "Cluster routing".
"""

from __future__ import annotations

from typing import Any

from chatd.cluster.node import ClusterNode
from chatd.core.ports.owners import Served


class ClusterOwners:
    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def owner(self, chat_id: str) -> str:
        return self._node.ring(chat_id)

    def elsewhere(self, chat_id: str) -> bool:
        return self._node.ring(chat_id) != self._node.node_id

    async def forward(self, chat_id: str, op: str, payload: dict[str, Any]) -> Any:
        return await self._node.call(self._node.ring(chat_id), op, payload)

    def serve(self, op: str, handler: Served) -> None:
        self._node.on_call(op, lambda _peer, payload: handler(payload))
