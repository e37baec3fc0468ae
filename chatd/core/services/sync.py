"""Catch-up for a device that connects: every message it has not acknowledged.

A device's delivery watermark per chat says what it has; everything above it
(and above the user's join point) is replayed oldest first within each chat.
A brand-new device has no watermark, so it receives the history it may see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatd.core.auth import Caller
from chatd.core.ports.storage import Storage
from chatd.core.services.media import attachments
from chatd.core.services.sealed import own_ciphertexts
from chatd.core.views import message_status, message_view

PAGE = 200
FIRST_PAGE = 64
#: Content bytes one page should hold: pages of large messages get fewer rows,
#: so a replay to a slow socket holds about this much history in memory.
PAGE_BYTES = 1 << 20


class SyncService:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def backlog(self, caller: Caller) -> AsyncIterator[tuple[str, int, dict[str, Any]]]:
        """Yields ``(chat_id, seq, message view)`` for each unacknowledged message."""
        for pending in await self._storage.receipts.pending(caller.user_id, caller.device_id):
            members = await self._storage.chats.members(pending.chat_id)
            after, limit = pending.after_seq, FIRST_PAGE
            while after < pending.last_seq:
                page = await self._storage.messages.after(pending.chat_id, after, limit)
                visible = [m for m in page if m.seq <= pending.last_seq]  # not past leaving
                media = await attachments(self._storage, visible)
                sealed = await own_ciphertexts(self._storage, caller.device_id, visible)
                for message in visible:
                    status = message_status(message, members)
                    view = message_view(
                        message, status, media.get(message.media_id or ""), sealed.get(message.seq)
                    )
                    yield message.chat_id, message.seq, view
                if len(visible) < len(page) or not page:
                    break
                after = page[-1].seq
                size = sum(len(m.content) for m in page)
                limit = max(8, min(PAGE, PAGE * PAGE_BYTES // max(1, size)))
