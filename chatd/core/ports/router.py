"""The router: where events go once the core has decided who gets them.

A node's sockets live in its gateway (a ``LocalDelivery``); the router carries
an event to the sockets of a set of users wherever they are connected, and an
``Invalidation`` to every node. One node is a cluster of one: the local router
hands everything to the sockets of this process; a cluster router (gossip)
replaces it behind this same port. Modelled on Centrifuge's ``Broker``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from chatd.core.events import Event, Invalidation


class LocalDelivery(Protocol):
    """The open sockets of one node (the gateway's session registry)."""

    def deliver(self, user_ids: Iterable[str], event: Event, skip_device: str | None) -> None:
        """Queue ``event`` for every socket here of ``user_ids`` but ``skip_device``'s.

        An event with ``per_device`` gives each device named there its own copy
        (``Event.data_for``: an encrypted message's ciphertext); with
        ``only_listed``, devices not named get nothing.

        Never blocks and never raises for a slow receiver: a socket whose queue is
        full is closed and its device resyncs on reconnect.
        """


class Router(Protocol):
    def attach(
        self,
        node_id: str,
        sockets: LocalDelivery,
        on_invalidation: Callable[[Invalidation], None],
    ) -> None:
        """Join this node: its sockets receive events, its caches invalidations."""

    def detach(self, node_id: str) -> None:
        """Leave: nothing more is delivered to this node."""

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        """Deliver ``event`` to every connected device of ``user_ids``, on any node.

        Never blocks. Ordering: two events published by one node for one user
        reach each of its devices in the order they were published (the fan-out
        publishes a chat's messages in seq order, so devices see seq order).
        """

    def invalidate(self, invalidation: Invalidation) -> None:
        """Apply ``invalidation`` on every node, this one included, before returning
        for this node and as soon as the network allows for the others."""
