"""Test faults, switched on by environment variables read once when the app is built.

They exist so the test suite can prove that its checks catch a broken server
(the benchmark fails a lossy run, for one). Unset, they cost nothing: ``sink``
returns the real sink itself, so the delivery path is the same object as ever.

``CHATD_FAULT_DROP_EVERY=N``: every Nth ``new_message`` event published to
connected devices is dropped (it stays stored, so a replay would still bring it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from chatd.core.events import Event
from chatd.core.ports.events import EventSink

log = logging.getLogger(__name__)

DROP_EVERY = "CHATD_FAULT_DROP_EVERY"


class DroppingSink:
    """An ``EventSink`` that loses every ``every``-th new_message publish."""

    def __init__(self, sink: EventSink, every: int) -> None:
        self._sink = sink
        self._every = every
        self._count = 0

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        if event.type == "new_message":
            self._count += 1
            if self._count % self._every == 0:
                return
        self._sink.publish(user_ids, event, skip_device=skip_device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)  # everything else goes to the real sink


def sink(real: EventSink) -> EventSink:
    """``real``, or ``real`` behind the fault the environment asks for (a test)."""
    raw = os.environ.get(DROP_EVERY, "").strip()
    if not raw:
        return real
    every = int(raw)
    if every < 1:
        raise ValueError(f"{DROP_EVERY} must be a positive integer, not {raw!r}")
    log.warning("TEST FAULT %s=%d: 1 new_message in %d is not delivered", DROP_EVERY, every, every)
    return DroppingSink(real, every)
