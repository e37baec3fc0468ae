"""Typed waiting over a stream of server events, without losing the ones skipped.

Tests ask "the next message_read" while new_message and presence frames keep
arriving; those skipped frames go to a backlog that later waits check first, so the
order of events of any one type is always the order the server sent them.
"""

# The public API takes timeout= (tests and the benchmark are written against it).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from typing import Any

Event = dict[str, Any]
EventTypes = str | tuple[str, ...] | None


def _matches(event: Event, types: tuple[str, ...] | None) -> bool:
    return types is None or event.get("type") in types


class EventInbox:
    """The ``events`` queue plus the backlog of events skipped by a typed wait.

    A subclass puts frames into ``events`` and calls ``_end_inbox`` once no more can
    come, after which waits raise ConnectionError as soon as nothing is left.
    """

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._backlog: list[Event] = []
        self._inbox_ended = asyncio.Event()

    def _end_inbox(self) -> None:
        self._inbox_ended.set()

    def _take(self, types: tuple[str, ...] | None) -> Event | None:
        """The oldest held event of ``types``; the rest stay held in arrival order."""
        for i, event in enumerate(self._backlog):
            if _matches(event, types):
                return self._backlog.pop(i)
        queue = self.events
        while not queue.empty():
            event = queue.get_nowait()
            if _matches(event, types):
                return event
            self._backlog.append(event)
        return None

    async def _wait_more(self, deadline: float) -> None:
        """Move the next arriving event into the backlog.

        Raises TimeoutError at ``deadline`` and ConnectionError once the session has
        ended with nothing queued.
        """
        loop = asyncio.get_running_loop()
        if not self.events.empty():
            self._backlog.append(self.events.get_nowait())
            return
        if self._inbox_ended.is_set():
            raise ConnectionError("chatd websocket session is closed")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("no matching chatd event before the timeout")
        getter = loop.create_task(self.events.get())
        ended = loop.create_task(self._inbox_ended.wait())
        got = False
        try:
            await asyncio.wait(
                (getter, ended), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ended.cancel()
            if getter.done() and not getter.cancelled():
                self._backlog.append(getter.result())
                got = True
            else:
                getter.cancel()
        if not got and not self._inbox_ended.is_set() and loop.time() >= deadline:
            raise TimeoutError("no matching chatd event before the timeout")

    async def next_event(self, type: EventTypes = None, *, timeout: float = 5.0) -> Event:
        """The next event (of ``type``, a name or a tuple of names), oldest first.

        Events of other types that arrive first are kept for later calls, never lost.
        Raises TimeoutError after ``timeout`` seconds, ConnectionError when the session
        has ended and no such event is left.
        """
        types = (type,) if isinstance(type, str) else type
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            event = self._take(types)
            if event is not None:
                return event
            await self._wait_more(deadline)

    async def collect(self, type: str, count: int, *, timeout: float = 5.0) -> list[Event]:
        """The next ``count`` events of ``type``, all within ``timeout`` seconds.

        On timeout the events already found are put back (so nothing is lost) and
        TimeoutError says how many arrived.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        found: list[Event] = []
        try:
            while len(found) < count:
                event = self._take((type,))
                if event is None:
                    await self._wait_more(deadline)
                else:
                    found.append(event)
        except TimeoutError:
            self._backlog[:0] = found
            raise TimeoutError(f"got {len(found)} of {count} {type!r} events") from None
        except ConnectionError:
            self._backlog[:0] = found
            raise
        return found

    async def drain(self, *, quiet: float = 0.2) -> list[Event]:
        """Every held and arriving event until none arrives for ``quiet`` seconds.

        Returns early (without raising) once the session has ended and nothing is left.
        """
        loop = asyncio.get_running_loop()
        out: list[Event] = []
        while True:
            out.extend(self._backlog)
            self._backlog.clear()
            try:
                await self._wait_more(loop.time() + quiet)
            except (TimeoutError, ConnectionError):
                out.extend(self._backlog)
                self._backlog.clear()
                return out
