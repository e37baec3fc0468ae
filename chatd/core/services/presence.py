"""Presence and typing, held in this process's memory.

A user is online while at least one of its devices has a socket open. Changes go
to the online users who may see them: those with the user in their contacts and
those sharing a direct chat. Typing indicators expire by themselves after
``typing_ttl`` seconds without a refresh.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import ChatdError
from chatd.core.events import Event
from chatd.core.ids import format_ts, now_ms
from chatd.core.ports.events import EventSink
from chatd.core.ports.storage import Storage
from chatd.core.services.chats import ChatService

log = logging.getLogger(__name__)


class PresenceService:
    def __init__(
        self, storage: Storage, chats: ChatService, sink: EventSink, *, typing_ttl: float = 6.0
    ) -> None:
        self._storage = storage
        self._chats = chats
        self._sink = sink
        self._typing_ttl = typing_ttl
        self._sockets: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}
        self._typing: dict[tuple[str, str], tuple[asyncio.TimerHandle, list[str]]] = {}

    def is_online(self, user_id: str) -> bool:
        return self._sockets.get(user_id, 0) > 0

    async def connected(self, user_id: str) -> None:
        self._sockets[user_id] = self._sockets.get(user_id, 0) + 1
        if self._sockets[user_id] == 1:
            await self._announce(user_id, "online", now_ms())

    async def disconnected(self, user_id: str) -> None:
        left = self._sockets.get(user_id, 0) - 1
        if left > 0:
            self._sockets[user_id] = left
            return
        self._sockets.pop(user_id, None)
        seen = now_ms()
        self._last_seen[user_id] = seen
        try:
            await self._storage.users.update(user_id, last_seen=seen)
        except ChatdError:
            log.warning("could not store last_seen of %s", user_id)
        if not self.is_online(user_id):  # it may have reconnected meanwhile
            await self._announce(user_id, "offline", seen)

    async def status(self, user_id: str) -> dict[str, Any]:
        user = await self._storage.users.get(user_id)
        if user is None:
            raise ChatdError("not_found", "user not found")
        online = self.is_online(user_id)
        seen = now_ms() if online else self._last_seen.get(user_id, user.last_seen)
        return {
            "user_id": user_id,
            "status": "online" if online else "offline",
            "last_seen": format_ts(seen),
        }

    async def typing(self, caller: Caller, data: Any) -> None:
        data = validate.body(data)
        chat_id = validate.required_string(data, "chat_id", max_len=64)
        is_typing = validate.boolean(data, "is_typing")
        members = await self._chats.ensure_member(caller, chat_id)
        others = [user_id for user_id in members if user_id != caller.user_id]
        key = (chat_id, caller.user_id)
        shown = self._typing.pop(key, None)
        if shown is not None:
            shown[0].cancel()
        if is_typing:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(self._typing_ttl, self._expire, key, others)
            self._typing[key] = (handle, others)
        elif shown is None:
            return  # nothing was shown, so there is nothing to clear
        self._publish_typing(others, chat_id, caller.user_id, is_typing)

    def stop_typing_everywhere(self, user_id: str) -> None:
        """A user whose last socket closed stops typing at once."""
        for key in [k for k in self._typing if k[1] == user_id]:
            handle, others = self._typing.pop(key)
            handle.cancel()
            self._publish_typing(others, key[0], user_id, False)

    def _expire(self, key: tuple[str, str], others: list[str]) -> None:
        self._typing.pop(key, None)
        self._publish_typing(others, key[0], key[1], False)

    def _publish_typing(
        self, users: list[str], chat_id: str, user_id: str, is_typing: bool
    ) -> None:
        event = Event(
            "typing_indicator", {"chat_id": chat_id, "user_id": user_id, "is_typing": is_typing}
        )
        self._sink.publish(users, event)

    async def _announce(self, user_id: str, status: str, seen: int) -> None:
        try:
            watchers = set(await self._storage.contacts.watchers(user_id))
            watchers.update(await self._storage.chats.direct_peers(user_id))
        except ChatdError:
            log.warning("could not announce %s of %s", status, user_id)
            return
        watchers.discard(user_id)
        online = self._sink.online_users(watchers)
        if online:
            event = Event(
                "presence", {"user_id": user_id, "status": status, "last_seen": format_ts(seen)}
            )
            self._sink.publish(online, event)

    def close(self) -> None:
        for handle, _ in self._typing.values():
            handle.cancel()
        self._typing.clear()
