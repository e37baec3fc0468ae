"""Sending messages: validate, authorize, store durably, then fan out.

The order is the contract's promise: the message is appended (seq assigned,
durable) before the caller gets its answer, and only then published to the
members' devices. A repeat of a ``client_msg_id`` answers as the first send did
and publishes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, bad_request
from chatd.core.events import Event
from chatd.core.models import (
    MESSAGE_TYPES,
    Appended,
    Media,
    Message,
    MessageDraft,
    WatermarkResult,
)
from chatd.core.ports.events import EventSink
from chatd.core.ports.storage import Storage
from chatd.core.ratelimit import TokenBucket
from chatd.core.services.chats import ChatService
from chatd.core.services.media import MediaService
from chatd.core.services.receipts import ReceiptService, Reply, spawn
from chatd.core.views import message_view

log = logging.getLogger(__name__)


class MessageService:
    def __init__(
        self,
        storage: Storage,
        chats: ChatService,
        sink: EventSink,
        receipts: ReceiptService,
        media: MediaService,
        *,
        max_message_bytes: int = 65536,
        messages_per_second: float = 20,
    ) -> None:
        self._storage = storage
        self._chats = chats
        self._sink = sink
        self._receipts = receipts
        self._media = media
        self._max_bytes = max_message_bytes
        self._append_nowait = getattr(storage.messages, "append_nowait", None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rate = TokenBucket(
            messages_per_second, max(1.0, messages_per_second * 2), what="messages"
        )

    async def send(self, caller: Caller, data: Any) -> Appended:
        """Validate, store durably, publish: the whole send in one call (REST)."""
        return await self.commit(caller, await self.prepare(caller, data))

    async def prepare(self, caller: Caller, data: Any) -> MessageDraft:
        """Everything before the durability point: checks, rate limit, authorization.

        Split from ``commit`` so a socket can check its frames in arrival order
        and then let several commits share one group commit.
        """
        data = validate.body(data)
        chat_id = data.get("chat_id")
        recipient_id = data.get("recipient_id")
        if (chat_id is None) == (recipient_id is None):
            raise bad_request("give exactly one of chat_id and recipient_id")
        kind = validate.required_string(data, "type", max_len=16)
        if kind not in MESSAGE_TYPES:
            raise bad_request(f"type must be one of {', '.join(sorted(MESSAGE_TYPES))}")
        content = validate.string(data, "content", required=True, max_len=10**9)
        assert content is not None
        if len(content.encode("utf-8", "surrogatepass")) > self._max_bytes:
            raise ChatdError("payload_too_large", f"content is over {self._max_bytes} bytes")
        client_msg_id = validate.required_string(data, "client_msg_id", max_len=128)
        media_id = validate.string(data, "media_id", required=False, max_len=64)
        reply_to = validate.string(data, "reply_to", required=False, max_len=64)
        if data.get("encrypted"):
            raise bad_request("end-to-end encrypted messages are not enabled on this server")
        if media_id is None and kind != "text":
            article = "an" if kind in ("image", "audio") else "a"
            raise bad_request(f"{article} {kind} message needs a media_id")
        self._rate.take(caller.user_id)

        if recipient_id is not None:
            if not isinstance(recipient_id, str):
                raise bad_request("recipient_id must be a string")
            chat, _ = await self._chats.open_direct(caller, recipient_id)
            chat_id = chat.chat_id
        await self._chats.ensure_member(caller, chat_id)
        if reply_to is not None and await self._storage.messages.get(chat_id, reply_to) is None:
            raise bad_request("reply_to is not a message of this chat")
        if media_id is not None:
            await self._media.for_message(caller, media_id, kind)
        return MessageDraft(
            chat_id=chat_id,
            sender_id=caller.user_id,
            sender_device_id=caller.device_id,
            type=kind,
            content=content,
            client_msg_id=client_msg_id,
            media_id=media_id,
            reply_to=reply_to,
        )

    async def commit(self, caller: Caller, draft: MessageDraft) -> Appended:
        """Store the draft (the durability point), then publish it if it is new."""
        appended = await self._storage.messages.append(draft)
        if appended.created:
            await self._after_append(caller, appended)
        return appended

    def submit(self, caller: Caller, draft: MessageDraft, reply: Reply) -> None:
        """``commit`` for the WebSocket: ``reply(appended, None)`` once stored and published.

        With a store that hands out the append's future (``append_nowait``),
        the common case (members cached, no media, no earlier message of
        someone else left unread) publishes from that future's callback: no
        task and no coroutine per message. Everything else runs ``commit``'s
        path in a task.
        """
        if self._append_nowait is None:
            spawn(self._tasks, self.commit(caller, draft), reply)
            return
        try:
            future = self._append_nowait(draft)
        except Exception as exc:
            reply(None, exc)
            return
        future.add_done_callback(lambda f: self._appended(caller, f, reply))

    def _appended(self, caller: Caller, future: asyncio.Future[Appended], reply: Reply) -> None:
        if future.cancelled():
            reply(None, ChatdError("unavailable", "storage is closed"))
            return
        if (exc := future.exception()) is not None:
            reply(None, exc)
            return
        appended = future.result()
        if not appended.created:
            reply(appended, None)
            return
        try:
            done = self._publish_now(caller, appended)
        except Exception as exc:
            reply(None, exc)
            return
        if not done:
            spawn(self._tasks, self._after_append(caller, appended), reply)
        elif self._covers_unread(appended):
            # Published already, in seq order; only the implicit read needs storage.
            spawn(self._tasks, self._announced(caller, appended), reply)
        else:
            reply(appended, None)

    async def _announced(self, caller: Caller, appended: Appended) -> Appended:
        await self._announce_implicit_read(caller, appended)
        return appended

    def _publish_now(self, caller: Caller, appended: Appended) -> bool:
        """Publish without waiting, if nothing needs storage; False if it does."""
        message = appended.message
        if message.media_id is not None:
            return False
        members = self._chats.cached_member_ids(message.chat_id)
        if members is None:
            return False
        self._receipts.remember(message)
        self._sink.publish(members, self._event(message, None), skip_device=caller.device_id)
        return True

    async def _after_append(self, caller: Caller, appended: Appended) -> Appended:
        """Publish a newly stored message, then announce the reads its sending implies."""
        message = appended.message
        self._receipts.remember(message)
        members = await self._chats.member_ids(message.chat_id)
        media = await self._storage.media.get(message.media_id) if message.media_id else None
        self._sink.publish(members, self._event(message, media), skip_device=caller.device_id)
        await self._announce_implicit_read(caller, appended)
        return appended

    @staticmethod
    def _event(message: Message, media: Media | None) -> Event:
        return Event(
            "new_message",
            message_view(message, media=media),
            chat_id=message.chat_id,
            seq=message.seq,
            created_at=message.created_at,
        )

    @staticmethod
    def _covers_unread(appended: Appended) -> bool:
        """Whether this send raised the sender's read watermark over others' messages."""
        message, read = appended.message, appended.previous_read_seq
        delivered = appended.previous_delivered_seq
        return read is not None and delivered is not None and read < message.seq - 1

    async def _announce_implicit_read(self, caller: Caller, appended: Appended) -> None:
        """Replying reads the chat: tell the senders of what it covered, as a receipt would."""
        if not self._covers_unread(appended):
            return  # nothing from anyone else was unread
        message = appended.message
        read, delivered = appended.previous_read_seq, appended.previous_delivered_seq
        assert read is not None and delivered is not None
        result = WatermarkResult(delivered, message.seq, read, message.seq)
        await self._receipts.announce(
            caller, message.chat_id, message.seq, message.message_id, result
        )
