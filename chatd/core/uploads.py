"""What one user's uploads may cost: how many at once, how often, how fast, how many bytes.

``UploadLedger`` counts per user, in this process: uploads streaming now
(``[limits] concurrent_uploads_per_user``), uploads started per minute
(``uploads_per_minute``), bytes uploaded in any 24 hours (``upload_bytes_per_day``)
and bytes of uploads no message carries yet (``unsent_upload_bytes``; such an
upload is deleted by retention after its grace period, so only that period
counts). Whether an upload was sent is asked of storage only when a user is near
the unsent limit, and a sent upload is remembered as such (it stays sent).

``paced`` ends an upload whose body trickles in: every window of
``upload_rate_window_s`` must bring ``upload_min_bytes_per_s`` on average.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.ratelimit import TokenBucket

DAY_MS = 24 * 3600 * 1000


@dataclass(slots=True)
class Entry:
    """One accepted upload (or one being recorded: ``media_id`` None)."""

    at_ms: int
    size: int
    media_id: str | None = None
    sent: bool = False


class UploadLedger:
    def __init__(
        self,
        *,
        per_minute: int,
        concurrent: int,
        unsent_bytes: int,
        bytes_per_day: int,
        unsent_window_ms: int,
        is_sent: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._bucket = TokenBucket(per_minute / 60, max(per_minute, 1), what="uploads")
        self._concurrent = concurrent
        self._unsent_bytes = unsent_bytes
        self._bytes_per_day = bytes_per_day
        self._unsent_window_ms = unsent_window_ms
        self._is_sent = is_sent
        self._running: dict[str, int] = {}
        self._entries: dict[str, deque[Entry]] = {}

    @contextlib.contextmanager
    def slot(self, user_id: str) -> Iterator[None]:
        """Hold one of the user's concurrent uploads; ``rate_limited`` if none is free."""
        if self._running.get(user_id, 0) >= self._concurrent:
            raise ChatdError(
                "rate_limited",
                f"at most {self._concurrent} uploads at once; wait for one to finish",
                retry_after=1.0,
            )
        self._bucket.take(user_id)
        self._running[user_id] = self._running.get(user_id, 0) + 1
        try:
            yield
        finally:
            left = self._running[user_id] - 1
            if left:
                self._running[user_id] = left
            else:
                del self._running[user_id]

    def precheck(self, user_id: str, size: int) -> None:
        """Refuse early an upload whose declared size is over the daily limit."""
        if self._bytes_per_day and self._day_bytes(user_id, now_ms()) + size > self._bytes_per_day:
            raise self._day_error()

    async def admit(self, user_id: str, size: int) -> Entry:
        """Record an upload of ``size`` bytes, or raise ``payload_too_large``.

        The returned entry must be completed with ``media_id`` once stored, or
        given back with ``cancel`` if the upload fails after all.
        """
        now = now_ms()
        entries = self._prune(user_id, now)
        if self._unsent_bytes:
            window = now - self._unsent_window_ms
            if self._unsent(entries, window) + size > self._unsent_bytes:
                for entry in list(entries):  # only now: ask storage which were sent
                    if entry.media_id and not entry.sent and entry.at_ms >= window:
                        entry.sent = await self._is_sent(entry.media_id)
            # No await below: the check and the record are one step.
            if self._unsent(entries, window) + size > self._unsent_bytes:
                raise ChatdError(
                    "payload_too_large",
                    f"uploads no message carries yet are limited to {self._unsent_bytes} "
                    "bytes per user; send or wait for older ones first",
                )
        if self._bytes_per_day and self._day_bytes(user_id, now) + size > self._bytes_per_day:
            raise self._day_error()
        entry = Entry(now, size)
        entries.append(entry)
        return entry

    def cancel(self, user_id: str, entry: Entry) -> None:
        entries = self._entries.get(user_id)
        if entries is not None:
            with contextlib.suppress(ValueError):
                entries.remove(entry)

    def _prune(self, user_id: str, now: int) -> deque[Entry]:
        entries = self._entries.setdefault(user_id, deque())
        oldest = now - max(DAY_MS, self._unsent_window_ms)
        while entries and entries[0].at_ms < oldest:
            entries.popleft()
        return entries

    def _day_bytes(self, user_id: str, now: int) -> int:
        return sum(e.size for e in self._entries.get(user_id, ()) if e.at_ms >= now - DAY_MS)

    @staticmethod
    def _unsent(entries: deque[Entry], since: int) -> int:
        return sum(e.size for e in entries if not e.sent and e.at_ms >= since)

    def _day_error(self) -> ChatdError:
        return ChatdError(
            "payload_too_large",
            f"uploads are limited to {self._bytes_per_day} bytes per user in 24 hours",
        )


async def paced(
    chunks: AsyncIterable[bytes], *, min_bytes_per_s: int, window_s: float
) -> AsyncIterator[bytes]:
    """``chunks`` as they come, ended with ``bad_request`` once a window brings too little.

    Time is cut into windows of ``window_s``; each must bring at least
    ``min_bytes_per_s * window_s`` bytes (at least one). A read waits only until
    the end of the first window that would otherwise fall short.
    """
    loop = asyncio.get_running_loop()
    need = max(1, int(min_bytes_per_s * window_s))
    window_end = loop.time() + window_s
    got = 0
    source = aiter(chunks)
    while True:
        deadline = window_end if got < need else window_end + window_s
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(source)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ChatdError(
                "bad_request",
                f"the upload is too slow (under {min_bytes_per_s} bytes/s over {window_s:g} s)",
            ) from None
        now = loop.time()
        while now >= window_end:  # the windows this chunk's wait spanned
            if got < need:
                raise ChatdError("bad_request", "the upload is too slow")
            got, window_end = 0, window_end + window_s
        got += len(chunk)
        yield chunk
