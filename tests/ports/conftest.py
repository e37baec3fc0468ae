"""Contract suites for the live-state ports (router, presence), one per port.

Each suite runs on every implementation listed in its module's fixture; a
cluster implementation is added there and must pass the same cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatd.core.events import Event, Invalidation


class RecordingSockets:
    """A node's ``LocalDelivery`` that records what reached it, in order."""

    def __init__(self) -> None:
        self.delivered: list[tuple[list[str], Event, str | None]] = []
        self.invalidations: list[Invalidation] = []

    def deliver(self, user_ids: Iterable[str], event: Event, skip_device: str | None) -> None:
        self.delivered.append((list(user_ids), event, skip_device))

    def apply(self, invalidation: Invalidation) -> None:
        self.invalidations.append(invalidation)

    def events(self) -> list[Any]:
        return [event.data for _, event, _ in self.delivered]
