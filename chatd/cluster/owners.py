"""Chat owners over the cluster: ``Owners`` for the core, on ``ClusterNode`` calls.

The owner of a chat is the alive node that rendezvous hashing of its id picks.
A write for a chat owned elsewhere is sent to the owner as an ``owned`` call;
a node that receives one for a chat it no longer owns (the sender's view was
older) passes it on once, to the owner in its own view, and otherwise runs it.

**Hand-over.** When the alive set changes and a chat's previous owner is still
alive (a node joined, or views differed for a moment), the previous owner may
still be writing the chat: a message it stored may not have reached the homes
yet. Before its first write of such a chat, the new owner *fences* it: it asks
the previous owner to ``settle`` the chat (its fan-out line for the chat empty,
and every frame it queued so far acknowledged by its peers, so the homes hold
its events before any of the new owner's). Until that answer, the chat's
writes wait on the new owner; a previous owner that dies meanwhile needs no
fence (its lost frames are resynced, see ``chatd.cluster.router``). A chat's
events therefore reach every home in seq order across the hand-over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chatd.cluster.node import ClusterNode
from chatd.core.errors import ChatdError
from chatd.core.ports.owners import Served

log = logging.getLogger(__name__)

#: After a change, chats whose previous owner is alive are fenced this long.
FENCE_WINDOW_S = 30.0


class ClusterOwners:
    def __init__(self, node: ClusterNode, *, fence_window_s: float = FENCE_WINDOW_S) -> None:
        self._node = node
        self._window = fence_window_s
        self._served: dict[str, Served] = {}
        self._fenced: set[str] = set()
        self._fencing: dict[str, asyncio.Future[None]] = {}
        node.on_call("owned", self._owned)
        node.on_call("settle", self._settle)
        node.on_change(self._changed)

    def owner(self, chat_id: str) -> str:
        return self._node.ring(chat_id)

    # -- the port -----------------------------------------------------------------

    def elsewhere(self, chat_id: str) -> bool:
        """True also while this node must fence the chat first (``forward`` does)."""
        if self._node.ring(chat_id) != self._node.node_id:
            return True
        return chat_id not in self._fenced and self._previous(chat_id) is not None

    async def forward(self, chat_id: str, op: str, payload: dict[str, Any]) -> Any:
        owner = self._node.ring(chat_id)
        if owner == self._node.node_id:
            return await self._run_here(chat_id, op, payload)
        request = {"chat_id": chat_id, "op": op, "hop": 0, "body": payload}
        return await self._node.call(owner, "owned", request)

    def serve(self, op: str, handler: Served) -> None:
        self._served[op] = handler

    # -- calls from peers -------------------------------------------------------------

    async def _owned(self, peer: str, request: dict[str, Any]) -> Any:
        chat_id = request["chat_id"]
        owner = self._node.ring(chat_id)
        if owner != self._node.node_id and request["hop"] == 0 and owner != peer:
            return await self._node.call(owner, "owned", {**request, "hop": 1})
        return await self._run_here(chat_id, request["op"], request["body"])

    async def _run_here(self, chat_id: str, op: str, payload: dict[str, Any]) -> Any:
        handler = self._served.get(op)
        if handler is None:
            raise ChatdError("bad_request", f"unknown forwarded write {op}")
        await self._fence(chat_id)
        return await handler(payload)

    async def _settle(self, peer: str, request: dict[str, Any]) -> bool:
        """The chat's new owner asks: are our writes of it all out and acknowledged?"""
        settle = self._served.get("settle")
        settled = True if settle is None else bool(await settle({"chat_id": request["chat_id"]}))
        return settled and await self._node.flushed()

    # -- fences -------------------------------------------------------------------------

    def _previous(self, chat_id: str) -> str | None:
        return self._node.previous_owner(chat_id, self._window)

    async def _fence(self, chat_id: str) -> None:
        if chat_id in self._fenced:
            return
        previous = self._previous(chat_id)
        if previous is None:
            return
        running = self._fencing.get(chat_id)
        if running is None:
            running = self._fencing[chat_id] = asyncio.ensure_future(
                self._settle_at(previous, chat_id)
            )
            running.add_done_callback(lambda _f: self._fencing.pop(chat_id, None))
        await asyncio.shield(running)

    async def _settle_at(self, previous: str, chat_id: str) -> None:
        try:
            if not await self._node.call(previous, "settle", {"chat_id": chat_id}):
                log.warning("chat %s: its previous owner %s did not settle", chat_id, previous)
        except ChatdError:
            if previous in self._node.ring.nodes:  # alive and silent: not safe to write yet
                raise
        self._fenced.add(chat_id)

    def _changed(self, gone: set[str], lost: dict[str, set[str]]) -> None:
        self._fenced.clear()
