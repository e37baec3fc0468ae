"""The cluster router: an event goes from its publisher to each recipient's home
node, and from there to the nodes holding that user's sockets.

Every user has a *home*, the alive node chosen by rendezvous hashing of its
id. Nodes tell a user's home where its devices are connected
(``ClusterPresence``); the home keeps that directory. ``publish`` groups the
recipients by home and sends one frame per home carrying the user list; the
home groups them again by the nodes holding their sockets and sends one frame
per node (or delivers here). Nothing is broadcast but invalidations.

Order: a chat's messages are published by one node (its owner, see
``chatd.cluster.owners``) in seq order, links are FIFO and never lose a frame
they accepted, and every event for a user takes the one path
owner -> home(user) -> node, so each device sees a chat in seq order.

Loss: a link that is full drops event frames and remembers their users; a
peer that dies takes its queue with it. Either way the users concerned get a
``lost`` notice routed through their home, which closes their sockets here
and on every node holding them (code 1013): their clients reconnect and
replay from storage what they had not acknowledged.

Gaps: a client acknowledges the highest seq it got, so a device must never
get seq n of a chat live without n - 1. Two owners of one chat (a split
brain: each side of a partition owns it and both append, the store keeping
the seqs unique) or an owner that died between storing and publishing leave
such holes. So each node remembers the last seq it routed per chat (as owner
or home); an event that skips one is not delivered: its users' sockets are
closed as for a loss, and they replay it all from storage. The owner marks
the frames of an event that skipped a seq on its side, so every home resyncs
its users even without a memory of the chat. A node that has none, right
after the chat's previous owner was lost, resyncs its users too (what that
owner stored last may never have come).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from chatd.cluster.node import ClusterNode
from chatd.cluster.presence import ClusterPresence
from chatd.core.events import Event, Invalidation
from chatd.core.ports.router import LocalDelivery

log = logging.getLogger(__name__)

LOST_REASON = "missed live events; reconnect to resync"
#: Chats whose last routed seq a node remembers (the least recently routed forgotten).
SEEN_CHATS = 200_000
#: After a change, a chat whose previous owner was lost is checked this long.
LOST_OWNER_WINDOW_S = 30.0
IN_ORDER, SKIPPED, UNSURE = 0, 1, 2


def pack_event(event: Event) -> list[Any]:
    """An event as a link frame carries it, per-device fields included (an end-to-end
    encrypted message's ciphertexts, an event for one device)."""
    return [
        event.type,
        event.data,
        event.chat_id,
        event.seq,
        event.created_at,
        event.per_device,
        event.only_listed,
    ]


def unpack_event(packed: list[Any]) -> Event:
    return Event(*packed[:7])


class ClusterRouter:
    def __init__(self, node: ClusterNode, presence: ClusterPresence) -> None:
        self._node = node
        self._presence = presence
        self._sockets: LocalDelivery | None = None
        self._apply: Callable[[Invalidation], None] | None = None
        #: chat -> the last seq routed through this node (as owner or home).
        self._seen: OrderedDict[str, int] = OrderedDict()
        #: Events not delivered because they skipped a seq (their users resynced).
        self.gaps = 0
        node.on("pub", self._on_pub)
        node.on("dlv", self._on_dlv)
        node.on("inv", self._on_inv)
        node.on("lost", self._on_lost)
        node.on("lost_link", self._on_lost_link)
        node.on_change(self._changed)
        node.on_restart(self._restarted)
        presence.on_missed(self.lost)

    # -- the port ---------------------------------------------------------------

    def attach(
        self,
        node_id: str,
        sockets: LocalDelivery,
        on_invalidation: Callable[[Invalidation], None],
    ) -> None:
        self._sockets, self._apply = sockets, on_invalidation
        self._node.start()

    def detach(self, node_id: str) -> None:
        self._sockets = self._apply = None

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        ring, me = self._node.ring, self._node.node_id
        by_home: dict[str, list[str]] = {}
        for user_id in user_ids:
            home = ring(user_id)
            users = by_home.get(home)
            if users is None:
                by_home[home] = [user_id]
            else:
                users.append(user_id)
        packed: list[Any] | None = None
        order = self._check(event)
        for home, users in by_home.items():
            if home == me:
                self._at_home(users, event, packed, skip_device, 0, order != IN_ORDER)
            else:
                if packed is None:
                    packed = pack_event(event)
                skipped = order == SKIPPED
                self._node.send(home, ["pub", users, packed, skip_device, 0, skipped], users)

    def invalidate(self, invalidation: Invalidation) -> None:
        self._apply_here(invalidation)
        self._node.broadcast(
            ["inv", invalidation.kind, list(invalidation.ids), invalidation.reason]
        )

    # -- seq order across owners ----------------------------------------------------

    def _check(self, event: Event) -> int:
        """Whether ``event`` follows the last seq of its chat routed here."""
        chat_id, seq = event.chat_id, event.seq
        if chat_id is None or seq <= 0:
            return IN_ORDER
        seen = self._seen
        last = seen.get(chat_id)
        if last is None:
            seen[chat_id] = seq
            if len(seen) > SEEN_CHATS:
                seen.popitem(last=False)
            if self._node.owner_lost(chat_id, LOST_OWNER_WINDOW_S):
                return UNSURE
            return IN_ORDER
        seen.move_to_end(chat_id)
        if seq <= last:
            return IN_ORDER  # sent again (or before this one): the client keeps one
        seen[chat_id] = seq
        return SKIPPED if seq > last + 1 else IN_ORDER

    # -- the home's part -------------------------------------------------------------

    def _at_home(
        self,
        users: list[str],
        event: Event,
        packed: list[Any] | None,
        skip_device: str | None,
        hops: int,
        gap: bool = False,
    ) -> None:
        me, ring = self._node.node_id, self._node.ring
        per_node, moved = self._presence.locate(users, hops)
        if gap and per_node:
            self.gaps += 1
            log.info(
                "chat %s: seq %s skipped one here; resyncing %d users",
                event.chat_id,
                event.seq,
                sum(len(u) for u in per_node.values()),
            )
            for node_id, node_users in per_node.items():
                if node_id == me:
                    self._close_here(node_users)
                else:
                    self._node.send(node_id, ["lost", node_users, False], force=True)
            per_node = {}
        for node_id, node_users in per_node.items():
            if node_id == me:
                if self._sockets is not None:
                    self._sockets.deliver(node_users, event, skip_device)
                continue
            if packed is None:
                packed = pack_event(event)
            self._node.send(node_id, ["dlv", node_users, packed, skip_device], node_users)
        if moved:  # homed elsewhere now: the publisher had an older view; pass them on once
            if packed is None:
                packed = pack_event(event)
            by_home: dict[str, list[str]] = {}
            for user_id in moved:
                by_home.setdefault(ring(user_id), []).append(user_id)
            for home, home_users in by_home.items():
                self._node.send(
                    home, ["pub", home_users, packed, skip_device, hops + 1, gap], home_users
                )

    def _on_pub(self, peer: str, frame: list[Any]) -> None:
        _, users, packed, skip_device, hops, skipped = frame
        event = unpack_event(packed)
        gap = self._check(event) != IN_ORDER or skipped
        self._at_home(users, event, packed, skip_device, hops, gap)

    def _on_dlv(self, peer: str, frame: list[Any]) -> None:
        _, users, packed, skip_device = frame
        if self._sockets is not None:
            self._sockets.deliver(users, unpack_event(packed), skip_device)

    # -- invalidations and losses ------------------------------------------------------

    def _apply_here(self, invalidation: Invalidation) -> None:
        if self._apply is None:
            return
        try:
            self._apply(invalidation)
        except Exception:
            log.exception("applying %r failed", invalidation)

    def _on_inv(self, peer: str, frame: list[Any]) -> None:
        _, kind, ids, reason = frame
        self._apply_here(Invalidation(kind, tuple(ids), reason))

    def lost(self, users: Iterable[str]) -> None:
        """``users`` may have missed events: close their sockets everywhere (via their homes)."""
        ring, me = self._node.ring, self._node.node_id
        by_home: dict[str, list[str]] = {}
        for user_id in users:
            by_home.setdefault(ring(user_id), []).append(user_id)
        for home, home_users in by_home.items():
            if home == me:
                self._lost_at_home(home_users)
            else:
                self._node.send(home, ["lost", home_users, True], force=True)

    def _lost_at_home(self, users: list[str]) -> None:
        me = self._node.node_id
        self._close_here(users)  # also those only connected here (a dropped ``dlv``)
        per_node, _ = self._presence.locate(users, 1)
        for node_id, node_users in per_node.items():
            if node_id != me:
                self._node.send(node_id, ["lost", node_users, False], force=True)

    def _close_here(self, users: list[str]) -> None:
        if users:
            log.info("closing the sockets of %d users that missed events", len(users))
            self._apply_here(Invalidation("users", tuple(users), LOST_REASON))

    def _on_lost(self, peer: str, frame: list[Any]) -> None:
        _, users, at_home = frame
        if at_home:
            self._lost_at_home(users)
        else:
            self._close_here(users)

    def _on_lost_link(self, peer: str, frame: list[Any]) -> None:
        """Our link to ``peer`` dropped event frames: tell ``peer`` whose they were."""
        self._node.send(peer, ["lost", sorted(frame[0]), True], force=True)

    def _restarted(self, peer: str, lost: set[str]) -> None:
        if lost:
            self.lost(lost)

    def _changed(self, gone: set[str], lost: dict[str, set[str]]) -> None:
        users: set[str] = set()
        for peer_users in lost.values():
            users |= peer_users
        if users:
            self.lost(users)
