"""Presence and typing: the rules, over the ``Presence`` port's state.

A user is online while at least one of its devices has a socket open (on any
node: the port knows). Changes go to the online users who may see them: those
with the user in their contacts and those sharing a direct chat. Typing
indicators expire by themselves after ``typing_ttl`` seconds without a refresh.

Both are coalesced, since one client could otherwise make the server fan out
without limit: a typing refresh only extends the timer (the others are told
when typing starts and when it stops), and a user's presence changes reach its
watchers at most once per ``PRESENCE_INTERVAL_S``, the last state always
following.
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
from chatd.core.ports.presence import Presence
from chatd.core.ports.storage import Storage
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut
from chatd.core.tasks import Background

log = logging.getLogger(__name__)

#: At most one presence announcement per user in this many seconds.
PRESENCE_INTERVAL_S = 1.0


class PresenceService:
    def __init__(
        self,
        storage: Storage,
        chats: ChatService,
        fanout: FanOut,
        presence: Presence,
        *,
        typing_ttl: float = 6.0,
    ) -> None:
        self._storage = storage
        self._chats = chats
        self._fanout = fanout
        self._presence = presence
        self._typing_ttl = typing_ttl
        self._background = Background()
        #: user -> (loop time, status) of its last announcement (recent ones only)
        self._announced: dict[str, tuple[float, str]] = {}
        #: users whose latest change waits for the end of their interval
        self._trailing: dict[str, asyncio.TimerHandle] = {}
        presence.watch(self._changed)

    async def connected(self, caller: Caller) -> None:
        if self._presence.connected(caller.user_id, caller.device_id):
            await self._announce(caller.user_id, "online", now_ms())

    async def disconnected(self, caller: Caller) -> None:
        """A socket closed; the user's last one makes it offline and stops its typing."""
        seen = now_ms()
        if self._presence.disconnected(caller.user_id, caller.device_id, seen):
            await self._went_offline(caller.user_id, seen)

    def _changed(self, user_id: str, online: bool, at_ms: int) -> None:
        """A change reported by the port (a cluster's home node): announce it here."""
        if online:
            self._background.spawn(self._announce(user_id, "online", at_ms), "presence")
        else:
            self._background.spawn(self._went_offline(user_id, at_ms), "presence")

    async def _went_offline(self, user_id: str, seen: int) -> None:
        for chat_id in self._presence.typing_chats(user_id):
            if self._presence.stop_typing(chat_id, user_id):
                await self._publish_typing(chat_id, user_id, False)
        try:
            await self._storage.users.update(user_id, last_seen=seen)
        except ChatdError:
            log.warning("could not store last_seen of %s", user_id)
        if not self._presence.is_online(user_id):  # it may have reconnected meanwhile
            await self._announce(user_id, "offline", seen)

    async def status(self, user_id: str) -> dict[str, Any]:
        user = await self._storage.users.get(user_id)
        if user is None:
            raise ChatdError("not_found", "user not found")
        online = self._presence.is_online(user_id)
        seen = now_ms() if online else (self._presence.last_seen(user_id) or user.last_seen)
        return {
            "user_id": user_id,
            "status": "online" if online else "offline",
            "last_seen": format_ts(seen),
        }

    async def typing(self, caller: Caller, data: Any) -> None:
        data = validate.body(data)
        chat_id = validate.required_string(data, "chat_id", max_len=64)
        is_typing = validate.boolean(data, "is_typing")
        await self._chats.ensure_member(caller, chat_id)
        user_id = caller.user_id
        if is_typing:
            started = self._presence.start_typing(
                chat_id, user_id, self._typing_ttl, lambda: self._expired(chat_id, user_id)
            )
            if not started:
                return  # a refresh: the others are shown typing already
        elif not self._presence.stop_typing(chat_id, user_id):
            return  # nothing was shown, so there is nothing to clear
        await self._publish_typing(chat_id, user_id, is_typing)

    def _expired(self, chat_id: str, user_id: str) -> None:
        members = self._chats.cached_member_ids(chat_id)
        if members is not None:
            self._send_typing(members, chat_id, user_id, False)
        else:
            self._background.spawn(self._publish_typing(chat_id, user_id, False), "typing expiry")

    async def _publish_typing(self, chat_id: str, user_id: str, is_typing: bool) -> None:
        """To the chat's current members (a removed one no longer sees it)."""
        self._send_typing(await self._chats.member_ids(chat_id), chat_id, user_id, is_typing)

    def _send_typing(
        self, members: frozenset[str], chat_id: str, user_id: str, is_typing: bool
    ) -> None:
        event = Event(
            "typing_indicator", {"chat_id": chat_id, "user_id": user_id, "is_typing": is_typing}
        )
        self._fanout.publish([u for u in members if u != user_id], event)

    async def _announce(self, user_id: str, status: str, seen: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        last, last_status = self._announced.get(user_id, (None, None))
        if last is not None and now - last < PRESENCE_INTERVAL_S:
            if user_id not in self._trailing:  # the state at the interval's end follows
                wait = PRESENCE_INTERVAL_S - (now - last)
                self._trailing[user_id] = loop.call_later(wait, self._announce_latest, user_id)
            return
        if last_status == status and last is not None and now - last < 2 * PRESENCE_INTERVAL_S:
            return  # a trailing announcement of what the watchers were told already
        self._announced[user_id] = (now, status)
        if len(self._announced) > 10_000:  # keep only the users still inside an interval
            self._announced = {
                u: v for u, v in self._announced.items() if now - v[0] < 2 * PRESENCE_INTERVAL_S
            }
        await self._tell_watchers(user_id, status, seen)

    def _announce_latest(self, user_id: str) -> None:
        self._trailing.pop(user_id, None)
        online = self._presence.is_online(user_id)
        seen = now_ms() if online else (self._presence.last_seen(user_id) or now_ms())
        status = "online" if online else "offline"
        self._background.spawn(self._announce(user_id, status, seen), "announcing presence")

    async def _tell_watchers(self, user_id: str, status: str, seen: int) -> None:
        try:
            watchers = set(await self._storage.contacts.watchers(user_id))
            watchers.update(await self._storage.chats.direct_peers(user_id))
        except ChatdError:
            log.warning("could not announce %s of %s", status, user_id)
            return
        watchers.discard(user_id)
        online = self._presence.online_users(watchers)
        if online:
            event = Event(
                "presence", {"user_id": user_id, "status": status, "last_seen": format_ts(seen)}
            )
            self._fanout.publish(online, event)

    def close(self) -> None:
        for handle in self._trailing.values():
            handle.cancel()
        self._trailing.clear()
