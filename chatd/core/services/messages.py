"""Sending messages: validate, authorize, store durably, then fan out.

The order is the contract's promise: the message is appended (seq assigned,
durable) before the caller gets its answer, and it reaches the members'
devices through the fan-out's line for its chat, in seq order. A repeat of a
``client_msg_id`` answers as the first send did and publishes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.e2e import parse_ciphertexts
from chatd.core.errors import ChatdError, bad_request
from chatd.core.models import (
    MESSAGE_TYPES,
    Appended,
    Ciphertext,
    Media,
    Message,
    MessageDraft,
    WatermarkResult,
)
from chatd.core.ports.owners import Owners
from chatd.core.ports.storage import Storage, append_starter
from chatd.core.ratelimit import TokenBucket
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut, Ticket
from chatd.core.services.media import MediaService
from chatd.core.services.receipts import ReceiptService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A checked message ready to store, with the media it carries (for its event)."""

    draft: MessageDraft
    media: Media | None = None


class MessageService:
    def __init__(
        self,
        storage: Storage,
        chats: ChatService,
        fanout: FanOut,
        receipts: ReceiptService,
        media: MediaService,
        *,
        max_message_bytes: int = 65536,
        messages_per_second: float = 20,
        max_devices_per_message: int = 1024,
        max_ciphertext_bytes: int = 131072,
        owners: Owners | None = None,
    ) -> None:
        self._max_devices = max_devices_per_message
        self._max_ciphertext_bytes = max_ciphertext_bytes
        self._storage = storage
        self._chats = chats
        self._fanout = fanout
        self._receipts = receipts
        self._media = media
        self._max_bytes = max_message_bytes
        self._start_append = append_starter(storage.messages)
        self._rate = TokenBucket(
            messages_per_second, max(1.0, messages_per_second * 2), what="messages"
        )
        self._owners = owners
        if owners is not None:
            owners.serve("send", self._serve_send)
            owners.serve("settle", self._serve_settle)

    async def send(self, caller: Caller, data: Any) -> Appended:
        """Validate, store durably, publish: the whole send in one call (REST)."""
        outgoing = await self.prepare(caller, data)
        # Shielded: a caller that goes away must not cancel the store's future,
        # whose outcome the fan-out still needs.
        return await asyncio.shield(self.submit(caller, outgoing))

    async def prepare(self, caller: Caller, data: Any) -> Outgoing:
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
        encrypted = data.get("encrypted")
        if encrypted is None:
            encrypted = False
        if not isinstance(encrypted, bool):
            raise bad_request("encrypted must be true or false")
        content = validate.string(data, "content", required=not encrypted, max_len=10**9) or ""
        if len(content.encode("utf-8", "surrogatepass")) > self._max_bytes:
            raise ChatdError("payload_too_large", f"content is over {self._max_bytes} bytes")
        client_msg_id = validate.required_string(data, "client_msg_id", max_len=128)
        media_id = validate.string(data, "media_id", required=False, max_len=64)
        reply_to = validate.string(data, "reply_to", required=False, max_len=64)
        ciphertexts = None
        if encrypted:
            if content:
                raise bad_request("an encrypted message has an empty content")
            ciphertexts = parse_ciphertexts(
                data.get("ciphertexts"),
                max_devices=self._max_devices,
                max_body_bytes=self._max_ciphertext_bytes,
            )
        elif data.get("ciphertexts") is not None:
            raise bad_request("ciphertexts needs encrypted: true")
        if media_id is None and kind != "text" and not encrypted:
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
        media = await self._media.for_message(caller, media_id, kind) if media_id else None
        draft = MessageDraft(
            chat_id=chat_id,
            sender_id=caller.user_id,
            sender_device_id=caller.device_id,
            type=kind,
            content=content,
            client_msg_id=client_msg_id,
            media_id=media_id,
            reply_to=reply_to,
            encrypted=encrypted,
            ciphertexts=ciphertexts,
        )
        return Outgoing(draft, media)

    def submit(self, caller: Caller, outgoing: Outgoing) -> asyncio.Future[Appended]:
        """Start storing; the future resolves once the message is durable (or refused).

        One path for every message, whatever the store and the message type:
        the fan-out ticket is taken before the store call, and the stored
        message joins its chat's line from the future's callback. In a cluster,
        a chat owned by another node is stored and fanned out there.
        """
        owners = self._owners
        if owners is not None and owners.elsewhere(outgoing.draft.chat_id):
            return asyncio.ensure_future(self._forward(caller, outgoing))
        return self._submit_here(caller, outgoing)

    async def _forward(self, caller: Caller, outgoing: Outgoing) -> Appended:
        assert self._owners is not None
        payload = {
            "caller": dataclasses.asdict(caller),
            "draft": dataclasses.asdict(outgoing.draft),
            "media": None if outgoing.media is None else dataclasses.asdict(outgoing.media),
        }
        answer = await self._owners.forward(outgoing.draft.chat_id, "send", payload)
        message = Message(**answer["message"])
        self._receipts.remember(message)
        return Appended(
            message,
            answer["created"],
            answer["previous_read_seq"],
            answer["previous_delivered_seq"],
        )

    async def _serve_send(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A send forwarded by another node: checked there, stored and fanned out here."""
        caller = Caller(**payload["caller"])
        media = payload["media"]
        draft = payload["draft"]
        if draft.get("ciphertexts") is not None:
            draft["ciphertexts"] = {d: Ciphertext(**c) for d, c in draft["ciphertexts"].items()}
        outgoing = Outgoing(MessageDraft(**draft), None if media is None else Media(**media))
        appended = await asyncio.shield(self._submit_here(caller, outgoing))
        return dataclasses.asdict(appended)

    async def _serve_settle(self, payload: dict[str, Any]) -> bool:
        """The chat's new owner asks: are this node's writes of the chat all out?"""
        return await self._fanout.settled(payload["chat_id"])

    def _submit_here(self, caller: Caller, outgoing: Outgoing) -> asyncio.Future[Appended]:
        ticket = self._fanout.begin(outgoing.draft.chat_id)
        try:
            future = self._start_append(outgoing.draft)
        except BaseException:
            self._fanout.abandon(ticket)
            raise
        future.add_done_callback(functools.partial(self._stored, caller, outgoing, ticket))
        return future

    def _stored(
        self,
        caller: Caller,
        outgoing: Outgoing,
        ticket: Ticket,
        future: asyncio.Future[Appended],
    ) -> None:
        try:
            if future.cancelled() or future.exception() is not None:
                return
            appended = future.result()
            if not appended.created:
                return
            message = appended.message
            self._receipts.remember(message)
            self._fanout.message(
                ticket,
                message,
                outgoing.media,
                skip_device=caller.device_id,
                ciphertexts=outgoing.draft.ciphertexts,
            )
            read, delivered = appended.previous_read_seq, appended.previous_delivered_seq
            if read is not None and delivered is not None and read < message.seq - 1:
                # Replying reads the chat: tell the senders of what it covered, as a
                # read receipt would (only when something from someone else was unread).
                result = WatermarkResult(delivered, message.seq, read, message.seq)
                self._receipts.announce(
                    caller, message.chat_id, message.seq, message.message_id, result
                )
        except Exception:
            log.exception("fanning out a stored message failed")
        finally:
            self._fanout.abandon(ticket)  # no-op once the message joined the line
