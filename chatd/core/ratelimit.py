"""In-memory rate limits, per key (a user id, a username, an address, a device)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from chatd.core.errors import ChatdError


class TokenBucket:
    """``rate`` events per second with bursts up to ``burst``, per key.

    Keys are kept in an LRU of bounded size, so a flood of distinct keys cannot
    grow memory without bound; a forgotten key starts again with a full bucket.
    A ``rate`` of 0 or less means no limit.
    """

    def __init__(self, rate: float, burst: float, *, what: str, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @classmethod
    def per_period(cls, count: float, seconds: float, *, what: str) -> TokenBucket:
        """``count`` events per ``seconds``, all of them usable in one burst."""
        return cls(count / seconds, max(1.0, count), what=what)

    def _tokens(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may spend a token; 0 when it may now."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def try_take(self, key: str, now: float | None = None) -> bool:
        """Spend one token if there is one; False (and nothing spent) if not."""
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        if tokens < 1:
            self._store(key, tokens, now)
            return False
        self._store(key, tokens - 1, now)
        return True

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token or raise ``rate_limited`` with the seconds to wait."""
        now = time.monotonic() if now is None else now
        if not self.try_take(key, now):
            raise self.refusal(self.wait(key, now))

    def give_back(self, key: str, now: float | None = None) -> None:
        """Return a token spent on an event that turned out not to count."""
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        self._store(key, min(self.burst, self._tokens(key, now) + 1), now)

    def refusal(self, wait: float) -> ChatdError:
        return ChatdError("rate_limited", f"too many {self.what}; retry later", retry_after=wait)


def take_all(charges: Sequence[tuple[TokenBucket, str]], now: float | None = None) -> None:
    """Spend a token from every (bucket, key) or from none of them.

    Raises ``rate_limited`` naming the bucket that would wait longest, so one
    request over any of its limits costs nothing against the others.
    """
    now = time.monotonic() if now is None else now
    waits = [(bucket.wait(key, now), bucket) for bucket, key in charges]
    longest, bucket = max(waits, key=lambda pair: pair[0], default=(0.0, None))
    if bucket is not None and longest > 0:
        raise bucket.refusal(longest)
    for bucket, key in charges:
        bucket.try_take(key, now)
