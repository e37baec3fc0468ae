"""Who may open one more WebSocket: per user, per address, and while descriptors last.

Checked before the upgrade, so a refused handshake costs one HTTP answer
(``429 rate_limited`` past a user's or an address's cap, ``503 unavailable``
when the process is near its descriptor limit) and never a socket. The user
count spans nodes: sockets already counted by the ``Presence`` port (every
node's) plus this node's upgrades still under way. Addresses and descriptors
are this node's own. Addresses come from ``gateway/address.py`` (the client's,
through trusted proxies; IPv6 by /64).
"""

from __future__ import annotations

import contextlib
import logging
import resource

from chatd.core.errors import ChatdError
from chatd.core.ports.presence import Presence
from chatd.core.ratelimit import TokenBucket

log = logging.getLogger(__name__)


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


class Admission:
    def __init__(
        self,
        presence: Presence,
        *,
        per_user: int,
        per_address: int,
        descriptor_reserve: int,
        failed_handshakes_per_minute: float = 60,
    ) -> None:
        self._presence = presence
        self._per_user = per_user
        self._per_address = per_address
        self._reserve = descriptor_reserve
        self._descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._upgrading: dict[str, int] = {}  # user -> upgrades under way here
        self._addresses: dict[str, int] = {}  # address -> open sockets here
        self._open = 0  # sockets here, upgrading or open
        self._failures = TokenBucket(
            failed_handshakes_per_minute / 60,
            max(1.0, failed_handshakes_per_minute / 2),
            what="failed WebSocket handshakes from this address",
        )

    def start(self) -> None:
        """At start-up: raise the descriptor limit and size the socket budget by it."""
        self._descriptors = raise_descriptor_limit()
        log.info(
            "descriptor limit %d: WebSockets are refused past %d (reserve %d)",
            self._descriptors,
            self.socket_budget(),
            self._reserve,
        )

    def socket_budget(self) -> int:
        return max(0, self._descriptors - self._reserve)

    def check_failures(self, address: str) -> None:
        """Before authenticating: an address that keeps failing handshakes waits."""
        if self._failures.wait(address) > 0:
            self._failures.take(address)  # raises rate_limited with Retry-After

    def failed(self, address: str) -> None:
        """A handshake from ``address`` failed authentication."""
        with contextlib.suppress(ChatdError):  # counted; check_failures refuses the next
            self._failures.take(address)

    def admit(self, user_id: str, address: str) -> str:
        """Reserve a socket for ``user_id`` from ``address``, or raise; returns the key
        to pass to ``upgraded`` and ``release``."""
        key = address
        if self._open >= self.socket_budget():
            raise ChatdError("unavailable", "the server is at its connection limit; retry later")
        users = self._presence.sockets(user_id) + self._upgrading.get(user_id, 0)
        if users >= self._per_user:
            raise ChatdError(
                "rate_limited",
                f"at most {self._per_user} open WebSockets per user; close one first",
                retry_after=5.0,
            )
        if self._addresses.get(key, 0) >= self._per_address:
            raise ChatdError(
                "rate_limited",
                f"at most {self._per_address} open WebSockets from one address",
                retry_after=5.0,
            )
        self._upgrading[user_id] = self._upgrading.get(user_id, 0) + 1
        self._addresses[key] = self._addresses.get(key, 0) + 1
        self._open += 1
        return key

    def upgraded(self, user_id: str) -> None:
        """The socket is now counted by presence: it no longer counts as upgrading."""
        left = self._upgrading.get(user_id, 0) - 1
        if left > 0:
            self._upgrading[user_id] = left
        else:
            self._upgrading.pop(user_id, None)

    def release(self, user_id: str, key: str, *, upgraded: bool) -> None:
        """The socket is gone (or never opened)."""
        if not upgraded:
            self.upgraded(user_id)
        left = self._addresses.get(key, 0) - 1
        if left > 0:
            self._addresses[key] = left
        else:
            self._addresses.pop(key, None)
        self._open -= 1
