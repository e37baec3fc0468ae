"""The notify step: which devices a released message wakes by push, written to the outbox.

Fed by the fan-out when a message is released (in seq order, with its
recipients). On that hot path it only appends to a per-chat buffer and, if none
is running, starts one background flush; the flush does the reads (targets,
presence, members for unread counts, names) and writes the outbox in one
``enqueue`` call per flush, so a burst of messages costs one storage write.
It never waits on a push provider: sending is the worker's job
(``chatd/push/worker.py``), which it wakes through ``enqueued``.

Who (contract, "Push notifications"): each device of each recipient that has a
target, except the sending device, with no live socket on any node (the
presence port). One waiting notification per device and chat: the outbox keeps
the latest (see ``PushStore.enqueue``). A device that connects cancels its
waiting ones (``device_connected``).

Targets are cached per user for ``target_ttl_s``. A change (register, delete,
revocation, a target found gone) is a ``push_targets`` invalidation, which the
router applies on every node: each drops the user's entry at once
(``forget_targets``). The TTL only bounds what a change made outside the
cluster's router leaves stale (a CLI command in its own process).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from chatd.core.errors import ChatdError
from chatd.core.events import Event
from chatd.core.ids import new_id, now_ms
from chatd.core.ports.presence import Presence
from chatd.core.ports.push import OutboxItem, RegisteredTarget
from chatd.core.ports.storage import Storage
from chatd.core.tasks import Background

log = logging.getLogger(__name__)

_Entry = tuple[Event, Iterable[str], str | None]


def is_encrypted(message: Mapping[str, Any]) -> bool:
    """Whether a message (its ``new_message`` data) is end-to-end encrypted: such a
    message's content never goes into a payload. The one place that decides it."""
    return bool(message.get("encrypted"))


def payload_for(
    message: Mapping[str, Any],
    *,
    sender_name: str,
    chat_title: str | None,
    unread_count: int,
    include_content: bool,
) -> dict[str, Any]:
    """The contract's payload for one device's owner; no other message data."""
    payload: dict[str, Any] = {
        "type": "new_message",
        "chat_id": message["chat_id"],
        "message_id": message["message_id"],
        "seq": message["seq"],
        "sender_id": message["sender_id"],
        "sender_name": sender_name,
        "chat_title": chat_title,
        "unread_count": unread_count,
        "timestamp": message["timestamp"],
    }
    if include_content and not is_encrypted(message):
        payload["content"] = message.get("content")
    return payload


class _Cache:
    """A small LRU map with a time to live per entry."""

    def __init__(self, ttl_s: float, size: int) -> None:
        self._ttl = ttl_s
        self._size = size
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        self._items[key] = (time.monotonic() + self._ttl, value)
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


class NotifyService:
    def __init__(
        self,
        storage: Storage,
        presence: Presence,
        *,
        enabled: bool = True,
        include_content: bool = False,
        target_ttl_s: float = 10.0,
        cache_users: int = 100_000,
    ) -> None:
        self._storage = storage
        self._presence = presence
        self.enabled = enabled
        self._include_content = include_content
        self._targets = _Cache(target_ttl_s, cache_users)
        self._names = _Cache(60.0, cache_users)
        #: Direct chats seen: a chat's kind never changes and a direct chat has no
        #: title, so their flushes skip the chat read (half the step's cost on pairs).
        self._direct = _Cache(3600.0, cache_users)
        self._pending: dict[str, list[_Entry]] = {}
        self._flushing = False
        self._background = Background()
        #: Called with the devices of each outbox write (the worker sends them at once).
        self.enqueued: Callable[[Sequence[str]], None] = lambda device_ids: None

    # -- the hot path -------------------------------------------------------------

    def released(self, event: Event, recipients: Iterable[str], skip_device: str | None) -> None:
        """A message was released to ``recipients`` (the fan-out's step): note it."""
        if not self.enabled or event.type != "new_message" or event.chat_id is None:
            return
        entries = self._pending.get(event.chat_id)
        if entries is None:
            self._pending[event.chat_id] = [(event, recipients, skip_device)]
        else:
            entries.append((event, recipients, skip_device))
        if not self._flushing:
            self._flushing = True
            self._background.spawn(self._flush(), "writing push notifications")

    # -- in the background ----------------------------------------------------------

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, {}
                items: list[OutboxItem] = []
                for chat_id, entries in batch.items():
                    try:
                        items.extend(await self._items(chat_id, entries))
                    except ChatdError as exc:
                        log.warning("push notifications of chat %s skipped: %s", chat_id, exc)
                if not items:
                    continue
                try:
                    await self._storage.push.enqueue(items)
                except ChatdError as exc:
                    log.warning("%d push notifications not written: %s", len(items), exc)
                    continue
                self.enqueued(list(dict.fromkeys(i.device_id for i in items)))
        finally:
            self._flushing = False

    async def _items(self, chat_id: str, entries: list[_Entry]) -> list[OutboxItem]:
        """One item per device: the latest message of the chat it must hear of."""
        latest: dict[str, tuple[Event, str]] = {}
        for event, recipients, skip_device in entries:
            for user_id in recipients:
                for registered in await self.targets(user_id):
                    device_id = registered.target.device_id
                    if device_id != skip_device:
                        latest[device_id] = (event, user_id)
        online = self._presence.device_online
        latest = {d: v for d, v in latest.items() if not online(d)}
        if not latest:
            return []
        title = None
        if self._direct.get(chat_id) is None:
            chat = await self._storage.chats.get(chat_id)
            if chat is not None and chat.kind == "group":
                title = chat.title  # read each time: a group may be renamed
            elif chat is not None:
                self._direct.put(chat_id, True)
        members = {m.user_id: m for m in await self._storage.chats.members(chat_id)}
        now = now_ms()
        items = []
        for device_id, (event, user_id) in latest.items():
            message = event.data
            member = members.get(user_id)
            if member is None:
                continue  # left the chat meanwhile
            unread = max(0, event.seq - max(member.read_seq, member.joined_seq))
            payload = payload_for(
                message,
                sender_name=await self._name(message["sender_id"]),
                chat_title=title,
                unread_count=unread,
                include_content=self._include_content,
            )
            items.append(OutboxItem(device_id, chat_id, user_id, new_id(), event.seq, payload, now))
        return items

    async def targets(self, user_id: str) -> tuple[RegisteredTarget, ...]:
        """The user's push targets (cached for ``target_ttl_s``)."""
        cached = self._targets.get(user_id)
        if cached is None:
            cached = tuple(await self._storage.push.targets(user_id))
            self._targets.put(user_id, cached)
        return cached  # type: ignore[no-any-return]

    def forget_targets(self, user_id: str) -> None:
        """A target of the user changed (on some node: applied from the invalidation)."""
        self._targets.drop(user_id)

    async def _name(self, user_id: str) -> str:
        name = self._names.get(user_id)
        if name is None:
            user = await self._storage.users.get(user_id)
            name = (user.display_name or user.username) if user is not None else ""
            self._names.put(user_id, name)
        return name  # type: ignore[no-any-return]

    # -- connections --------------------------------------------------------------

    def device_connected(self, user_id: str, device_id: str) -> None:
        """The device opened a socket: what waits for it is cancelled (it syncs now)."""
        if self.enabled:
            self._background.spawn(self._cancel(user_id, device_id), "cancelling notifications")

    async def _cancel(self, user_id: str, device_id: str) -> None:
        if any(t.target.device_id == device_id for t in await self.targets(user_id)):
            await self._storage.push.cancel(device_id)

    async def wait_idle(self, within: float) -> None:
        await self._background.wait(within)
