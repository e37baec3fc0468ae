"""Test faults, switched on by environment variables read once when the app is built.

They exist so the test suite can prove that its checks catch a broken server
(the benchmark fails a lossy run, for one). Unset, they cost nothing:
``local_delivery`` returns the node's socket registry itself, so the delivery
path is the same object as ever.

``CHATD_FAULT_DROP_EVERY=N``: every Nth ``new_message`` event the router hands to
this node's sockets is dropped (it stays stored, so a replay would still bring it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from chatd.core.events import Event
from chatd.core.ports.router import LocalDelivery

log = logging.getLogger(__name__)

DROP_EVERY = "CHATD_FAULT_DROP_EVERY"


class DroppingDelivery:
    """A ``LocalDelivery`` that loses every ``every``-th new_message."""

    def __init__(self, sockets: LocalDelivery, every: int) -> None:
        self._sockets = sockets
        self._every = every
        self._count = 0

    def deliver(self, user_ids: Iterable[str], event: Event, skip_device: str | None) -> None:
        if event.type == "new_message":
            self._count += 1
            if self._count % self._every == 0:
                return
        self._sockets.deliver(user_ids, event, skip_device)


def local_delivery(sockets: LocalDelivery) -> LocalDelivery:
    """``sockets``, or ``sockets`` behind the fault the environment asks for (a test)."""
    raw = os.environ.get(DROP_EVERY, "").strip()
    if not raw:
        return sockets
    every = int(raw)
    if every < 1:
        raise ValueError(f"{DROP_EVERY} must be a positive integer, not {raw!r}")
    log.warning("TEST FAULT %s=%d: 1 new_message in %d is not delivered", DROP_EVERY, every, every)
    return DroppingDelivery(sockets, every)
