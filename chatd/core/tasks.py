"""Background work started from callbacks: kept referenced, failures logged, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Background:
    """Tasks whose outcome nobody awaits (an announce after a receipt, a member load).

    asyncio keeps only weak references to tasks, so each is held here until it
    ends; an exception is logged with ``what`` instead of vanishing.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s failed: %s", what, exc, exc_info=exc)

    async def wait(self, within: float) -> None:
        """Let running work finish (bounded), e.g. before the storage closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    def __len__(self) -> int:
        return len(self._tasks)


async def limited(seconds: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or ``TimeoutError`` after ``seconds``.

    Use it instead of ``asyncio.wait_for``: on Python 3.11 that can swallow a
    cancellation arriving as the awaited thing completes, so a loop cancelled at
    shutdown carries on and its stop waits for ever.
    """
    async with asyncio.timeout(seconds):
        return await awaitable
