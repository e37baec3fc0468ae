"""The router of a cluster of one: every event goes to the sockets of this process.

Several app instances in one process (tests) may share one ``LocalRouter``:
each attaches its sockets and its cache invalidation, and every publish and
invalidation reaches all of them, as a cluster router reaches every node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from chatd.core.events import Event, Invalidation
from chatd.core.ports.router import LocalDelivery

log = logging.getLogger(__name__)


class LocalRouter:
    def __init__(self) -> None:
        self._nodes: dict[str, tuple[LocalDelivery, Callable[[Invalidation], None]]] = {}
        #: The one attached node's sockets, the common case, called directly.
        self._only: LocalDelivery | None = None

    def attach(
        self,
        node_id: str,
        sockets: LocalDelivery,
        on_invalidation: Callable[[Invalidation], None],
    ) -> None:
        self._nodes[node_id] = (sockets, on_invalidation)
        self._refresh()

    def detach(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        self._refresh()

    def _refresh(self) -> None:
        nodes = list(self._nodes.values())
        self._only = nodes[0][0] if len(nodes) == 1 else None

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        only = self._only
        if only is not None:
            only.deliver(user_ids, event, skip_device)
            return
        users = list(user_ids)
        for sockets, _ in list(self._nodes.values()):
            sockets.deliver(users, event, skip_device)

    def invalidate(self, invalidation: Invalidation) -> None:
        for _, apply in list(self._nodes.values()):
            try:
                apply(invalidation)
            except Exception:  # one node's failure must not skip the others
                log.exception("applying %r failed", invalidation)
