"""Where services send events: the sockets of this node, or of the cluster."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chatd.core.events import Event


class EventSink(Protocol):
    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        """Queue ``event`` for every connected device of ``user_ids`` but ``skip_device``.

        Never blocks and never raises for a slow receiver: a device whose queue is
        full is disconnected and resyncs on reconnect.
        """

    def disconnect_devices(self, device_ids: Iterable[str], reason: str) -> None:
        """Close the sockets of these devices (revoked tokens, banned users)."""

    def online_users(self, user_ids: Iterable[str]) -> list[str]:
        """The subset of ``user_ids`` with at least one open socket."""
