"""Presence: who is online, since when offline, who is typing, which devices are live.

The local implementation keeps this in the process; a cluster one shares it
between nodes behind the same port (as Centrifuge's ``PresenceManager``). All
calls are synchronous: implementations answer from memory they keep current,
so a hot path (typing, push decisions) never waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class Presence(Protocol):
    def connected(self, user_id: str, device_id: str) -> bool:
        """A socket of the device opened. True when the user was offline before
        (it is now online: announce it). A device may hold several sockets. In a
        cluster, only the user's home node knows; elsewhere this is False and the
        home reports the change through ``watch``."""

    def disconnected(self, user_id: str, device_id: str, at_ms: int) -> bool:
        """A socket of the device closed at ``at_ms``. True when it was the user's
        last socket anywhere (the user is now offline, last seen ``at_ms``)."""

    def is_online(self, user_id: str) -> bool: ...

    def sockets(self, user_id: str) -> int:
        """The user's open sockets on every node (``[limits] max_sockets_per_user``)."""

    def online_users(self, user_ids: Iterable[str]) -> list[str]:
        """The subset of ``user_ids`` with at least one open socket, in input order."""

    def device_online(self, device_id: str) -> bool:
        """Whether the device has a live socket on any node (push skips it if so)."""

    def last_seen(self, user_id: str) -> int | None:
        """When the user's last socket closed (ms), if known here; None: ask storage."""

    def start_typing(
        self, chat_id: str, user_id: str, ttl_s: float, expired: Callable[[], None]
    ) -> bool:
        """The user types in the chat for ``ttl_s`` unless refreshed; ``expired`` is
        called once if it runs out. True if the user was not shown typing before."""

    def stop_typing(self, chat_id: str, user_id: str) -> bool:
        """The user stopped typing; True if it was shown typing (tell the others)."""

    def typing_chats(self, user_id: str) -> list[str]:
        """The chats in which the user is shown typing."""

    def watch(self, changed: Callable[[str, bool, int], None]) -> None:
        """Call ``changed(user_id, online, at_ms)`` when a user goes online or offline
        by a change ``connected``/``disconnected`` did not report (in a cluster the
        user's home node reports every change, once, there)."""

    def close(self) -> None:
        """Cancel every timer; nothing is called back afterwards."""
