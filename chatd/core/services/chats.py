"""Chats: opening direct chats, the inbox, history pages and who may see them.

Authorization lives here: every read of a chat goes through ``access`` (past
members keep the history they saw) and every write through ``ensure_member``;
anyone else gets ``not_found`` (it may not learn the chat exists).
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import bad_request, not_found
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, Member, Message
from chatd.core.ports.storage import Storage
from chatd.core.services.media import attachments
from chatd.core.services.sealed import own_ciphertexts
from chatd.core.views import chat_view, message_status, message_view, visible_last_seq

MAX_PAGE = 100
INBOX_PAGE = 200
MAX_INBOX_PAGE = 500


def _encode_cursor(last_activity: int, chat_id: str) -> str:
    """Opaque to clients: the sort key of the last chat shown."""
    raw = f"{last_activity}:{chat_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > 200:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        activity, _, chat_id = raw.partition(":")
        if not (activity.isascii() and activity.isdigit() and chat_id):
            raise ValueError
        return int(activity), chat_id
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise bad_request("cursor is not one this server gave") from None


class ChatService:
    def __init__(self, storage: Storage, *, cache_chats: int = 100_000) -> None:
        self._storage = storage
        # chat_id -> its members' ids, for the per-message authorization and
        # fan-out. A direct chat's members never change; code that changes a
        # chat's membership calls ``forget``.
        self._member_ids: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._cache_chats = cache_chats
        # Bumped by ``forget``: a load that started before a change must not
        # cache the members it read before the change.
        self._generation = 0

    async def open_direct(self, caller: Caller, user_id: str) -> tuple[Chat, bool]:
        """The direct chat of the caller and ``user_id``, created on first use."""
        if user_id == caller.user_id:
            raise bad_request("a direct chat needs another user")
        if await self._storage.users.get(user_id) is None:
            raise not_found("user not found")
        candidate = Chat(
            chat_id=new_id(), kind="direct", created_at=now_ms(), created_by=caller.user_id
        )
        chat = await self._storage.chats.get_or_create_direct(candidate, caller.user_id, user_id)
        return chat, chat.chat_id == candidate.chat_id

    async def member_ids(self, chat_id: str) -> frozenset[str]:
        """The ids of a chat's members (empty for an unknown chat), cached."""
        ids = self._member_ids.get(chat_id)
        if ids is not None:
            self._member_ids.move_to_end(chat_id)
            return ids
        generation = self._generation
        ids = frozenset(m.user_id for m in await self._storage.chats.members(chat_id))
        if ids and generation == self._generation:
            self._member_ids[chat_id] = ids
            if len(self._member_ids) > self._cache_chats:
                self._member_ids.popitem(last=False)
        return ids

    def cached_member_ids(self, chat_id: str) -> frozenset[str] | None:
        """The cached member ids, or None: lets a hot path skip a coroutine when cached."""
        ids = self._member_ids.get(chat_id)
        if ids is not None:
            self._member_ids.move_to_end(chat_id)
        return ids

    def forget(self, chat_id: str) -> None:
        """Drop a chat's cached membership after it changed (on any node)."""
        self._generation += 1
        self._member_ids.pop(chat_id, None)

    async def ensure_member(self, caller: Caller, chat_id: Any) -> frozenset[str]:
        """The chat's member ids if the caller is one; ``not_found`` otherwise."""
        if not isinstance(chat_id, str) or not chat_id:
            raise bad_request("chat_id must be a string")
        ids = await self.member_ids(chat_id)
        if caller.user_id not in ids:
            raise not_found("chat not found")
        return ids

    async def access(self, caller: Caller, chat_id: Any) -> tuple[Chat, Member, list[Member]]:
        """The chat, the caller's membership (current or past) and the current members.

        A past member keeps reading the history it saw; anyone else gets
        ``not_found``, as if the chat did not exist.
        """
        if not isinstance(chat_id, str) or not chat_id:
            raise bad_request("chat_id must be a string")
        me = await self._storage.chats.member(chat_id, caller.user_id)
        chat = await self._storage.chats.get(chat_id) if me is not None else None
        if me is None or chat is None:
            raise not_found("chat not found")
        return chat, me, await self._storage.chats.members(chat_id)

    async def inbox(self, caller: Caller, params: Mapping[str, str]) -> dict[str, Any]:
        """One page of the caller's chats, most recent activity first, with unread counts.

        Keyset pagination on ``(last_activity, chat_id)``: the cursor is the pair
        of the page's last chat, so a walk never shows a chat twice and never
        skips one whose activity did not change meanwhile. A chat that gets a
        message during the walk moves to the front (the client hears of it live).
        """
        limit = validate.query_int(params, "limit", INBOX_PAGE, minimum=1, maximum=MAX_INBOX_PAGE)
        before = _decode_cursor(params.get("cursor") or None)
        page = await self._storage.chats.inbox(caller.user_id, limit + 1, before)
        more = len(page) > limit
        page = page[:limit]
        views = await asyncio.gather(*(self._inbox_entry(chat, me) for chat, me in page))
        last = page[-1][0] if more else None
        return {
            "chats": views,
            "next_cursor": _encode_cursor(last.last_activity, last.chat_id) if last else None,
        }

    async def _inbox_entry(self, chat: Chat, me: Member) -> dict[str, Any]:
        members = await self._storage.chats.members(chat.chat_id)
        last = None
        last_seq = visible_last_seq(chat, me)
        if last_seq > me.joined_seq:
            message = await self._storage.messages.at_seq(chat.chat_id, last_seq)
            if message is not None:
                media = await attachments(self._storage, [message])
                status = message_status(message, members)
                last = message_view(message, status, media.get(message.media_id or ""))
        return chat_view(chat, me, members, last)

    async def chat_view(self, caller: Caller, chat_id: str) -> dict[str, Any]:
        chat, me, _ = await self.access(caller, chat_id)
        return await self._inbox_entry(chat, me)

    async def history(
        self, caller: Caller, chat_id: str, params: Mapping[str, str]
    ) -> dict[str, Any]:
        """One page of history: newest first with ``before``, oldest first with ``after_seq``.

        Only the part the caller may see: after it joined, up to when it left.
        """
        chat, me, members = await self.access(caller, chat_id)
        last_seq = visible_last_seq(chat, me)
        if "after_seq" in params:
            after = validate.query_int(params, "after_seq", 0, minimum=0, maximum=2**62)
            limit = validate.query_int(params, "limit", 100, minimum=1, maximum=MAX_PAGE)
            page = await self._storage.messages.after(chat_id, max(after, me.joined_seq), limit)
            messages = [m for m in page if m.seq <= last_seq]
            more = bool(messages) and messages[-1].seq < last_seq
            cursor: str | int | None = messages[-1].seq if more else None
            return await self._page(caller, messages, members, cursor)
        limit = validate.query_int(params, "limit", 50, minimum=1, maximum=MAX_PAGE)
        before_seq = last_seq + 1
        before = params.get("before")
        if before:
            anchor = await self._storage.messages.get(chat_id, before)
            if anchor is None or not me.joined_seq < anchor.seq <= last_seq:
                raise bad_request("before is not a message of this chat")
            before_seq = anchor.seq
        messages = await self._storage.messages.before(chat_id, before_seq, limit, me.joined_seq)
        more = bool(messages) and messages[-1].seq > me.joined_seq + 1
        cursor = messages[-1].message_id if more else None
        return await self._page(caller, messages, members, cursor)

    async def _page(
        self,
        caller: Caller,
        messages: list[Message],
        members: list[Member],
        cursor: str | int | None,
    ) -> dict[str, Any]:
        media = await attachments(self._storage, messages)
        sealed = await own_ciphertexts(self._storage, caller.device_id, messages)
        return {
            "messages": [
                message_view(
                    m, message_status(m, members), media.get(m.media_id or ""), sealed.get(m.seq)
                )
                for m in messages
            ],
            "next_cursor": cursor,
        }
