"""Failure detection: probe one peer per interval, directly then through others.

memberlist's ``probeNode``: every (awareness-scaled) probe interval the next
peer of a shuffled round-robin list gets a ``ping``; without an ``ack`` within
the probe timeout, ``indirect_checks`` random peers are asked to ping it and
relay the ack, or answer a ``nack`` if it stays silent. Without an ack by the
end of the interval the peer is suspected.

Lifeguard's local health ("awareness"): a node that misses acks because *it*
is slow (its nacks do not come back either) raises its own score and probes,
and so accuses, less often; every successful probe lowers it again.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from chatd.cluster.gossip.base import Clock, Timer, Timings
from chatd.cluster.gossip.codec import IndirectPing, Ping, Suspect
from chatd.cluster.gossip.state import MemberTable, NodeInfo


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        self._max = max(1, max_multiplier)
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self._max - 1)

    def scale(self, seconds: float) -> float:
        return seconds * (self.score + 1)


@dataclass(slots=True)
class _Handler:
    on_ack: Callable[[], None]
    on_nack: Callable[[], None] | None
    timer: Timer


class AckHandlers:
    """Who waits for the ack (or nack) of which sequence number, until when."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._handlers: dict[int, _Handler] = {}
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq) & 0xFFFFFFFF

    def expect(
        self,
        seq: int,
        on_ack: Callable[[], None],
        on_nack: Callable[[], None] | None,
        timeout: float,
        on_timeout: Callable[[], None] = lambda: None,
    ) -> None:
        def expired() -> None:
            if self._handlers.pop(seq, None) is not None:
                on_timeout()

        self._handlers[seq] = _Handler(on_ack, on_nack, self._clock.call_later(timeout, expired))

    def ack(self, seq: int) -> None:
        handler = self._handlers.pop(seq, None)
        if handler is not None:
            handler.timer.cancel()
            handler.on_ack()

    def nack(self, seq: int) -> None:
        handler = self._handlers.get(seq)
        if handler is not None and handler.on_nack is not None:
            handler.on_nack()

    def clear(self) -> None:
        for handler in self._handlers.values():
            handler.timer.cancel()
        self._handlers.clear()


class Prober:
    def __init__(
        self,
        table: MemberTable,
        timings: Timings,
        clock: Clock,
        rng: random.Random,
        handlers: AckHandlers,
        send: Callable[[str, str, list[object]], None],
        on_rtt: Callable[[str, float], None],
    ) -> None:
        self._table = table
        self._timings = timings
        self._clock = clock
        self._rng = rng
        self._handlers = handlers
        self._send = send
        self._on_rtt = on_rtt
        self.awareness = Awareness(timings.awareness_max_multiplier)
        self._order: list[str] = []
        self._index = 0
        self._timer: Timer | None = None

    def start(self) -> None:
        # A random first delay spreads the probes of nodes started together.
        delay = self._rng.uniform(0, self._timings.probe_interval_s)
        self._timer = self._clock.call_later(delay, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def add(self, node_id: str) -> None:
        """A new peer goes at a random place of the round, as memberlist does."""
        if node_id in self._order:
            return
        at = self._rng.randint(self._index, len(self._order)) if self._order else 0
        self._order.insert(at, node_id)

    def _next_target(self) -> NodeInfo | None:
        for _ in range(2):
            while self._index < len(self._order):
                node = self._table.nodes.get(self._order[self._index])
                self._index += 1
                if node is not None and node.status in ("alive", "suspect"):
                    return node
            # End of a round: forget the gone, reshuffle, start again.
            self._order = [
                n.node_id for n in self._table.others() if n.status in ("alive", "suspect")
            ]
            self._rng.shuffle(self._order)
            self._index = 0
        return None

    def _tick(self) -> None:
        interval = self.awareness.scale(self._timings.probe_interval_s)
        self._timer = self._clock.call_later(interval, self._tick)
        target = self._next_target()
        if target is not None:
            self.probe(target, interval)

    def probe(self, target: NodeInfo, interval: float) -> None:
        local = self._table.local
        seq = self._handlers.next_seq()
        sent = self._clock.now()
        incarnation = target.incarnation
        nacks = 0
        asked = 0
        done = False

        def acked() -> None:
            nonlocal done
            if done:
                return
            done = True
            self._on_rtt(target.node_id, self._clock.now() - sent)
            self.awareness.apply(-1)

        def nacked() -> None:
            nonlocal nacks
            nacks += 1

        def failed() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.awareness.apply(asked - nacks if asked else 1)
            self._table.suspect(Suspect(target.node_id, incarnation, local.node_id))

        def indirect() -> None:
            nonlocal asked
            if done:
                return
            peers = [n for n in self._table.others("alive") if n.node_id != target.node_id]
            for peer in self._rng.sample(peers, min(self._timings.indirect_checks, len(peers))):
                asked += 1
                request = IndirectPing(
                    seq, target.node_id, target.address, local.node_id, local.address
                )
                self._send(peer.node_id, peer.address, [request])

        self._handlers.expect(seq, acked, nacked, interval, failed)
        ping = Ping(seq, target.node_id, local.node_id, local.address)
        first: list[object] = [ping]
        if target.status == "suspect":
            # Lifeguard's buddy system: tell a suspect at once, so it can refute.
            first.append(Suspect(target.node_id, target.incarnation, local.node_id))
        self._send(target.node_id, target.address, first)
        self._clock.call_later(self._timings.probe_timeout_s, indirect)
