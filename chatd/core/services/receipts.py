"""Delivery and read receipts as watermarks.

A receipt for seq n covers every message up to n; a lower one than recorded
changes nothing and tells nobody. When a member's watermark moves, the senders of
the newly covered messages and the member's own other devices are told.

The hot path costs one write and no read: the messages this process stored
recently are remembered (``RecentMessages``: per chat, seq -> id and sender),
so a receipt for a just-delivered message finds its seq, and the senders it
covers, in memory; the receipts of one event-loop turn share one storage call.
Anything the memory does not cover is read from storage as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Literal

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, bad_request, not_found
from chatd.core.events import Event
from chatd.core.ids import format_ts, now_ms
from chatd.core.models import Message, WatermarkMove, WatermarkResult
from chatd.core.ports.storage import Storage, advance_starter
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut
from chatd.core.tasks import Background
from chatd.core.views import visible_last_seq

log = logging.getLogger(__name__)

Kind = Literal["delivered", "read"]


class _Window:
    """Consecutive seqs of one chat from ``base``: each slot (message_id, sender_id) or None."""

    __slots__ = ("base", "ids", "senders")

    def __init__(self, base: int) -> None:
        self.base = base
        self.ids: list[str | None] = []
        self.senders: list[str | None] = []


class RecentMessages:
    """The last messages of recently active chats, as stored: seq -> (message_id, sender).

    Messages never change once stored, so whatever is remembered stays true; a
    seq that was not seen here (another node's, a group change, one evicted) is
    simply unknown, and a question touching it gets None: ask storage. Bounded:
    2 x ``per_chat`` seqs per chat (trimmed back to ``per_chat``), ``slots`` seqs
    in all (the least recently written chats dropped first): at most ~13 MB.
    """

    def __init__(self, *, per_chat: int = 64, slots: int = 131_072) -> None:
        self._per_chat = per_chat
        self._max_slots = slots
        self._slots = 0  # slots held over all chats
        self._chats: OrderedDict[str, _Window] = OrderedDict()

    def record(self, chat_id: str, seq: int, message_id: str, sender_id: str) -> None:
        window = self._chats.get(chat_id)
        if window is None:
            window = self._chats[chat_id] = _Window(seq)
        else:
            self._chats.move_to_end(chat_id)
        index = seq - window.base
        size = len(window.ids)
        if index < 0:
            return  # older than what is kept
        if index < size:
            window.ids[index] = message_id
            window.senders[index] = sender_id
            return
        if index - size >= self._per_chat:  # far ahead: start over from it
            self._slots -= size
            window.base, window.ids, window.senders = seq, [], []
        else:  # seqs in between are unknown (not stored through this process)
            gap = index - size
            window.ids += [None] * gap
            window.senders += [None] * gap
            self._slots += gap
        window.ids.append(message_id)
        window.senders.append(sender_id)
        self._slots += 1
        if len(window.ids) > 2 * self._per_chat:
            drop = len(window.ids) - self._per_chat
            del window.ids[:drop]
            del window.senders[:drop]
            window.base += drop
            self._slots -= drop
        while self._slots > self._max_slots and len(self._chats) > 1:
            _, oldest = self._chats.popitem(last=False)
            self._slots -= len(oldest.ids)

    def find(self, chat_id: str, message_id: str) -> int | None:
        """The seq of ``message_id`` in the chat, if remembered."""
        window = self._chats.get(chat_id)
        if window is None:
            return None
        ids = window.ids
        start = max(0, len(ids) - 16)  # receipts are nearly always for the newest
        try:
            return window.base + ids.index(message_id, start)
        except ValueError:
            pass
        try:
            return window.base + ids.index(message_id, 0, start)
        except ValueError:
            return None

    def message_id(self, chat_id: str, seq: int) -> str | None:
        window = self._chats.get(chat_id)
        if window is None:
            return None
        index = seq - window.base
        return window.ids[index] if 0 <= index < len(window.ids) else None

    def senders(self, chat_id: str, low: int, high: int) -> set[str] | None:
        """The senders of seqs ``low < seq <= high``, or None unless all are remembered."""
        window = self._chats.get(chat_id)
        if window is None or high <= low:
            return None if window is None else set()
        start, stop = low + 1 - window.base, high + 1 - window.base
        if start < 0 or stop > len(window.senders):
            return None
        found = set(window.senders[start:stop])
        if None in found:
            return None
        return found  # type: ignore[return-value]

    def __len__(self) -> int:
        return self._slots


class _Waiting:
    """A stored receipt's answer and what to announce once its watermark moved."""

    __slots__ = ("answer", "caller", "chat_id", "message_id", "seq")

    def __init__(
        self, caller: Caller, chat_id: str, seq: int, message_id: str, answer: asyncio.Future[None]
    ) -> None:
        self.caller = caller
        self.chat_id = chat_id
        self.seq = seq
        self.message_id = message_id
        self.answer = answer


class _Plan:
    """One watermark that rose, and what to tell: filled from memory, else storage."""

    __slots__ = ("after", "before", "covered", "kind", "senders")

    def __init__(
        self, kind: str, before: int, after: int, covered: str | None, senders: set[str] | None
    ) -> None:
        self.kind = kind
        self.before = before
        self.after = after
        self.covered = covered
        self.senders = senders


class ReceiptService:
    def __init__(self, storage: Storage, chats: ChatService, fanout: FanOut) -> None:
        self._storage = storage
        self._chats = chats
        self._fanout = fanout
        self._start_advance = advance_starter(storage.receipts)
        self.recent = RecentMessages()
        # Receipts of one loop turn, stored with one ``advance`` call.
        self._moves: list[WatermarkMove] = []
        self._waiting: list[_Waiting] = []
        self._background = Background()

    def remember(self, message: Message) -> None:
        """A message this process just stored: later receipts for it need no read."""
        self.recent.record(message.chat_id, message.seq, message.message_id, message.sender_id)

    def submit(self, caller: Caller, data: Any, kind: Kind) -> asyncio.Future[None]:
        """A ``delivery_receipt`` or ``read_receipt`` frame: ``{chat_id, message_id}``.

        The future resolves once the watermark is stored. A receipt by a current
        member for a remembered message is checked in place and joins the other
        receipts of this loop turn; anything else is checked against storage first.
        """
        try:
            chat_id, message_id = _ids(data)
            members = self._chats.cached_member_ids(chat_id)
            seq = None
            if members is not None and caller.user_id in members:
                seq = self.recent.find(chat_id, message_id)
        except Exception as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        if seq is None:
            return asyncio.ensure_future(self.receipt(caller, data, kind))
        return self._store(caller, chat_id, seq, message_id, kind)

    async def receipt(self, caller: Caller, data: Any, kind: Kind) -> None:
        """``submit``'s checks against storage: the message must exist and be visible."""
        chat_id, message_id = _ids(data)
        if caller.user_id not in await self._chats.member_ids(chat_id):
            # A past member may still acknowledge what it saw before it left.
            _, me, _ = await self._chats.access(caller, chat_id)
        else:
            me = None
        seq = self.recent.find(chat_id, message_id)
        if seq is None:
            message = await self._storage.messages.get(chat_id, message_id)
            if message is None:
                raise not_found("message not found")
            seq = message.seq
        if me is not None and not me.sees(seq):
            raise not_found("message not found")
        await self._store(caller, chat_id, seq, message_id, kind)

    async def mark_read(self, caller: Caller, chat_id: str, data: Any) -> None:
        """``POST /chats/{id}/read {seq}``: the same effect as a ``read_receipt``."""
        data = validate.body(data)
        seq = validate.integer(data, "seq", minimum=1)
        chat, me, _ = await self._chats.access(caller, chat_id)
        if seq > visible_last_seq(chat, me):
            raise bad_request("seq is beyond the chat's last message")
        message_id = self.recent.message_id(chat_id, seq)
        if message_id is None:
            message = await self._storage.messages.at_seq(chat_id, seq)
            if message is None:
                raise not_found("message not found")
            message_id = message.message_id
        await asyncio.shield(self._store(caller, chat_id, seq, message_id, "read"))

    # -- storing: the receipts of one loop turn in one call --------------------

    def _store(
        self, caller: Caller, chat_id: str, seq: int, message_id: str, kind: Kind
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[None] = loop.create_future()
        if not self._moves:
            loop.call_soon(self._store_queued)
        self._moves.append(_move(caller, chat_id, seq, kind))
        self._waiting.append(_Waiting(caller, chat_id, seq, message_id, answer))
        return answer

    def _store_queued(self) -> None:
        moves, self._moves = self._moves, []
        waiting, self._waiting = self._waiting, []
        try:
            future = self._start_advance(moves)
        except Exception as exc:
            for w in waiting:
                _settle(w.answer, exc)
            return
        future.add_done_callback(lambda f: self._stored(waiting, f))

    def _stored(
        self, waiting: list[_Waiting], future: asyncio.Future[list[WatermarkResult | None]]
    ) -> None:
        if future.cancelled():
            error: BaseException | None = ChatdError("unavailable", "storage is closed")
        else:
            error = future.exception()
        results = [None] * len(waiting) if error is not None else future.result()
        for w, result in zip(waiting, results, strict=True):
            if error is not None:
                _settle(w.answer, error)
            elif result is None:
                _settle(w.answer, not_found("chat not found"))
            else:
                _settle(w.answer, None)
                try:
                    self.announce(w.caller, w.chat_id, w.seq, w.message_id, result)
                except Exception:
                    log.exception("announcing a receipt failed")

    # -- telling the senders -------------------------------------------------

    def announce(
        self, caller: Caller, chat_id: str, seq: int, message_id: str, result: WatermarkResult
    ) -> None:
        """Tell the senders of newly covered messages, and the caller's other devices.

        ``seq``/``message_id``: the message the receipt (or send) named. Answered
        from memory when it covers the range (the hot path: no read); otherwise
        the missing ids and senders are read from storage in the background.
        """
        plans = []
        for kind, before, after in _moved(result):
            covered = message_id if after == seq else self.recent.message_id(chat_id, after)
            plans.append(
                _Plan(kind, before, after, covered, self.recent.senders(chat_id, before, after))
            )
        if all(p.covered is not None and p.senders is not None for p in plans):
            self._publish(caller, chat_id, plans)
        else:
            self._background.spawn(
                self._announce_from_storage(caller, chat_id, message_id, plans),
                "announcing a receipt",
            )

    async def _announce_from_storage(
        self, caller: Caller, chat_id: str, message_id: str, plans: list[_Plan]
    ) -> None:
        for plan in plans:
            if plan.covered is None:
                message = await self._storage.messages.at_seq(chat_id, plan.after)
                plan.covered = message.message_id if message is not None else message_id
            if plan.senders is None:
                plan.senders = await self._storage.messages.senders_between(
                    chat_id, plan.before, plan.after
                )
        self._publish(caller, chat_id, plans)

    def _publish(self, caller: Caller, chat_id: str, plans: list[_Plan]) -> None:
        if not plans:
            return
        now = format_ts(now_ms())
        for plan in plans:
            senders = set(plan.senders or ())
            senders.discard(caller.user_id)
            data = {
                "chat_id": chat_id,
                "message_id": plan.covered,
                "seq": plan.after,
                "user_id": caller.user_id,
                f"{plan.kind}_at": now,
            }
            event = Event(f"message_{plan.kind}", data)
            self._fanout.publish([*senders, caller.user_id], event, skip_device=caller.device_id)


def _settle(answer: asyncio.Future[None], error: BaseException | None) -> None:
    if answer.done():
        return
    if error is None:
        answer.set_result(None)
    else:
        answer.set_exception(error)


def _ids(data: Any) -> tuple[str, str]:
    """``chat_id`` and ``message_id`` of a receipt frame, checked as ``receipt`` checks them.

    The common well-formed case is checked inline; anything else goes through
    ``validate`` for its exact error.
    """
    if type(data) is dict:
        chat_id, message_id = data.get("chat_id"), data.get("message_id")
        if (
            type(chat_id) is str
            and type(message_id) is str
            and 0 < len(chat_id) <= 64
            and 0 < len(message_id) <= 64
        ):
            return chat_id, message_id
    data = validate.body(data)
    return (
        validate.required_string(data, "chat_id", max_len=64),
        validate.required_string(data, "message_id", max_len=64),
    )


def _move(caller: Caller, chat_id: str, seq: int, kind: Kind) -> WatermarkMove:
    delivered = kind == "delivered"
    return WatermarkMove(
        chat_id=chat_id,
        user_id=caller.user_id,
        device_id=caller.device_id if delivered else None,
        delivered_seq=seq if delivered else 0,
        read_seq=0 if delivered else seq,
    )


def _moved(result: WatermarkResult) -> list[tuple[str, int, int]]:
    """The watermarks that rose, delivered first: (kind, before, after)."""
    out = []
    if result.delivered_after > result.delivered_before:
        out.append(("delivered", result.delivered_before, result.delivered_after))
    if result.read_after > result.read_before:
        out.append(("read", result.read_before, result.read_after))
    return out
