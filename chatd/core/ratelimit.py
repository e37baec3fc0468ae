"""In-memory rate limits, per key (a user id or a username)."""

from __future__ import annotations

import time
from collections import OrderedDict

from chatd.core.errors import ChatdError


class TokenBucket:
    """``rate`` events per second with bursts up to ``burst``, per key.

    Keys are kept in an LRU of bounded size, so a flood of distinct keys cannot
    grow memory without bound; a forgotten key starts again with a full bucket.
    """

    def __init__(self, rate: float, burst: float, *, what: str, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def peek(self, key: str, now: float | None = None) -> float:
        """The tokens ``key`` has now, without spending one."""
        if self.rate <= 0:
            return self.burst
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token or raise ``rate_limited`` with the seconds to wait."""
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
            raise ChatdError("rate_limited", f"too many {self.what}; retry later", retry_after=wait)
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
