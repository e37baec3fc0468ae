"""Background work started from callbacks: kept referenced, failures logged, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


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
