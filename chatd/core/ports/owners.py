"""Chat owners: in a cluster, one node runs every write of a chat.

A chat's messages are numbered and fanned out by its chat line
(``core/services/fanout.py``), the one place that orders them. In a cluster
each chat has an owner node (rendezvous hashing over the alive nodes); a node
that receives a write for a chat it does not own forwards it there, and the
owner runs the ordinary local path and answers. Without a cluster there is no
``Owners`` (every chat is this node's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Served = Callable[[dict[str, Any]], Awaitable[Any]]


class Owners(Protocol):
    def elsewhere(self, chat_id: str) -> bool:
        """True when another node owns the chat: forward its writes there."""

    async def forward(self, chat_id: str, op: str, payload: dict[str, Any]) -> Any:
        """Run ``op`` on the chat's owner and return its answer (msgpack-safe values).

        The owner's ``ChatdError`` is raised here as is; an owner that cannot be
        reached or does not answer in time raises ``unavailable`` (a client's
        retry is safe: sends are idempotent by ``client_msg_id``).
        """

    def serve(self, op: str, handler: Served) -> None:
        """Run ``handler(payload)`` when another node forwards ``op`` here."""
