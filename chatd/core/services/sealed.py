"""End-to-end encrypted messages after they are stored: each device's own
ciphertext in what it reads, and expiry of ciphertexts nobody acknowledged.

(Acknowledged ones are deleted by the receipts' own write; see
``ReceiptStore.advance``.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chatd.core.ids import now_ms
from chatd.core.models import Ciphertext, Message
from chatd.core.ports.storage import Storage

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


async def own_ciphertexts(
    storage: Storage, device_id: str, messages: Sequence[Message]
) -> dict[int, Ciphertext]:
    """The device's ciphertexts of a page of one chat's messages, by seq: one read,
    and none for a page without encrypted messages."""
    seqs = [m.seq for m in messages if m.encrypted]
    if not seqs:
        return {}
    return await storage.ciphertexts.between(device_id, messages[0].chat_id, min(seqs), max(seqs))


class CiphertextRetention:
    """Deletes ciphertexts kept longer than ``[e2e] ciphertext_retention_days``."""

    def __init__(self, storage: Storage, *, retention_days: float, interval_s: float) -> None:
        self._storage = storage
        self._retention_ms = int(retention_days * DAY_MS)
        self._interval_s = interval_s

    async def sweep(self, now: int | None = None) -> int:
        """Delete what was stored more than the retention period before ``now``
        (default: the current time); how many went, where the store knows."""
        cutoff = (now_ms() if now is None else now) - self._retention_ms
        return await self._storage.ciphertexts.expire(cutoff)

    async def run(self) -> None:
        """Sweep now and then every interval, until cancelled; failures are logged."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("ciphertext retention sweep failed")
            await asyncio.sleep(self._interval_s)
