"""Delivery and read receipts as watermarks.

A receipt for seq n covers every message up to n; a lower one than recorded
changes nothing and tells nobody. When a member's watermark moves, the senders of
the newly covered messages and the member's own other devices are told.
"""

from __future__ import annotations

from typing import Any, Literal

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import bad_request, not_found
from chatd.core.events import Event
from chatd.core.ids import format_ts, now_ms
from chatd.core.models import Message, WatermarkMove, WatermarkResult
from chatd.core.ports.events import EventSink
from chatd.core.ports.storage import Storage
from chatd.core.services.chats import ChatService
from chatd.core.views import visible_last_seq

Kind = Literal["delivered", "read"]


class ReceiptService:
    def __init__(self, storage: Storage, chats: ChatService, sink: EventSink) -> None:
        self._storage = storage
        self._chats = chats
        self._sink = sink

    async def receipt(self, caller: Caller, data: Any, kind: Kind) -> None:
        """A ``delivery_receipt`` or ``read_receipt`` frame: ``{chat_id, message_id}``."""
        data = validate.body(data)
        chat_id = validate.required_string(data, "chat_id", max_len=64)
        message_id = validate.required_string(data, "message_id", max_len=64)
        if caller.user_id not in await self._chats.member_ids(chat_id):
            # A past member may still acknowledge what it saw before it left.
            _, me, _ = await self._chats.access(caller, chat_id)
        else:
            me = None
        message = await self._storage.messages.get(chat_id, message_id)
        if message is None or (me is not None and not me.sees(message.seq)):
            raise not_found("message not found")
        await self._advance(caller, message, kind)

    async def mark_read(self, caller: Caller, chat_id: str, data: Any) -> None:
        """``POST /chats/{id}/read {seq}``: the same effect as a ``read_receipt``."""
        data = validate.body(data)
        seq = validate.integer(data, "seq", minimum=1)
        chat, me, _ = await self._chats.access(caller, chat_id)
        if seq > visible_last_seq(chat, me):
            raise bad_request("seq is beyond the chat's last message")
        message = await self._storage.messages.at_seq(chat_id, seq)
        if message is None:
            raise not_found("message not found")
        await self._advance(caller, message, "read")

    async def _advance(self, caller: Caller, message: Message, kind: Kind) -> None:
        move = WatermarkMove(
            chat_id=message.chat_id,
            user_id=caller.user_id,
            device_id=caller.device_id if kind == "delivered" else None,
            delivered_seq=message.seq if kind == "delivered" else 0,
            read_seq=message.seq if kind == "read" else 0,
        )
        (result,) = await self._storage.receipts.advance([move])
        if result is None:
            raise not_found("chat not found")
        await self.announce(caller, message, result)

    async def announce(self, caller: Caller, message: Message, result: WatermarkResult) -> None:
        """Tell the senders of newly covered messages, and the caller's other devices."""
        now = format_ts(now_ms())
        for kind, before, after in (
            ("delivered", result.delivered_before, result.delivered_after),
            ("read", result.read_before, result.read_after),
        ):
            if after <= before:
                continue
            covered = message
            if after != message.seq:
                covered = await self._storage.messages.at_seq(message.chat_id, after) or message
            senders = await self._storage.messages.senders_between(message.chat_id, before, after)
            senders.discard(caller.user_id)
            data = {
                "chat_id": message.chat_id,
                "message_id": covered.message_id,
                "seq": after,
                "user_id": caller.user_id,
                f"{kind}_at": now,
            }
            event = Event(f"message_{kind}", data)
            self._sink.publish([*senders, caller.user_id], event, skip_device=caller.device_id)
