"""A bound on expensive work: so many at once, so many waiting, the rest refused.

Password hashing is the case: each Argon2id hash takes tens of megabytes and
a core for a fraction of a second, so a flood of logins for random usernames
would otherwise queue without end, grow memory and delay the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from chatd.core.errors import ChatdError


class WorkGate:
    def __init__(self, at_once: int, queue: int, *, what: str, retry_after: float = 1.0) -> None:
        self._slots = asyncio.Semaphore(at_once)
        self._queue = queue
        self._waiting = 0
        self.what = what
        self._retry_after = retry_after

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a slot for the block; ``rate_limited`` at once when the queue is full."""
        if self._slots.locked() and self._waiting >= self._queue:
            raise ChatdError(
                "rate_limited",
                f"too many {self.what} in progress; retry later",
                retry_after=self._retry_after,
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
