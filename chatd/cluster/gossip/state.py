"""The member table and SWIM's rules for changing it (memberlist's state.go).

No I/O: updates come in as messages, what must be told to the cluster goes out
through ``broadcast``, and changes reach ``on_change``. The rules:

- A node's ``incarnation`` is raised only by the node itself. ``suspect`` and
  ``dead`` below the known incarnation are ignored; ``alive`` needs a higher
  one. So a node accused at incarnation i refutes by announcing itself alive at
  i + 1, and that wins everywhere.
- A suspicion becomes ``dead`` after a timeout that starts at its maximum and
  shrinks towards its minimum with each independent confirmation from another
  node (Lifeguard), so a node that is really gone is declared dead quickly when
  many agree, and a node that only one slow prober doubts has time to refute.
- ``dead`` sent by the node about itself means it ``left`` on purpose.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatd.cluster.gossip.base import Clock, Timer, Timings
from chatd.cluster.gossip.codec import Alive, Dead, Message, NodeState, Suspect
from chatd.cluster.membership import Member, Status

log = logging.getLogger(__name__)


def suspicion_bounds(timings: Timings, nodes: int) -> tuple[float, float]:
    """(min, max) seconds of a suspicion in a cluster of ``nodes`` (util.go)."""
    scale = max(1.0, math.log10(max(nodes, 1)))
    low = timings.suspicion_mult * scale * timings.probe_interval_s
    return low, low * timings.suspicion_max_timeout_mult


def suspicion_timeout(low: float, high: float, confirmations: int, wanted: int) -> float:
    """Lifeguard: max - log(c+1)/log(k+1) * (max - min), never below min."""
    if wanted <= 0:
        return low
    fraction = math.log(confirmations + 1) / math.log(wanted + 1)
    return max(low, high - fraction * (high - low))


class Suspicion:
    """One suspicion's timer, shortened by each new confirmation."""

    def __init__(
        self,
        clock: Clock,
        accuser: str,
        wanted: int,
        low: float,
        high: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._seen = {accuser}
        self.confirmations = 0
        self._wanted = wanted
        self._low, self._high = low, high
        self._start = clock.now()
        self._on_timeout = on_timeout
        self.timeout = suspicion_timeout(low, high, 0, wanted)
        self._timer: Timer = clock.call_later(self.timeout, on_timeout)

    def confirm(self, source: str) -> bool:
        """Count ``source`` once; True if it was new (then the news is spread again)."""
        if self.confirmations >= self._wanted or source in self._seen:
            return False
        self._seen.add(source)
        self.confirmations += 1
        self.timeout = suspicion_timeout(self._low, self._high, self.confirmations, self._wanted)
        self._timer.cancel()
        left = max(0.0, self._start + self.timeout - self._clock.now())
        self._timer = self._clock.call_later(left, self._on_timeout)
        return True

    def cancel(self) -> None:
        self._timer.cancel()


@dataclass(slots=True)
class NodeInfo:
    node_id: str
    address: str
    status: Status
    incarnation: int
    joined_at_ms: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: ``Clock.now()`` of the last status change.
    changed_at: float = 0.0
    suspicion: Suspicion | None = None

    def member(self) -> Member:
        return Member(
            self.node_id,
            self.address,
            self.status,
            self.incarnation,
            self.joined_at_ms,
            dict(self.meta),
        )

    def alive_message(self) -> Alive:
        return Alive(self.node_id, self.address, self.incarnation, self.joined_at_ms, self.meta)

    def node_state(self) -> NodeState:
        return NodeState(
            self.node_id,
            self.address,
            self.incarnation,
            self.status,
            self.joined_at_ms,
            self.meta,
        )


class MemberTable:
    def __init__(
        self,
        local: NodeInfo,
        timings: Timings,
        clock: Clock,
        broadcast: Callable[[str, Message], None],
        on_change: Callable[[Member], None],
        on_refute: Callable[[], None],
    ) -> None:
        self.local = local
        self.nodes: dict[str, NodeInfo] = {local.node_id: local}
        self._timings = timings
        self._clock = clock
        self._broadcast = broadcast
        self._on_change = on_change
        self._on_refute = on_refute
        #: Set by ``leave``: suspicions of this node are no longer refuted.
        self.leaving = False
        #: Called with a node's id when it is first seen alive (the prober adds it).
        self.on_new: Callable[[str], None] = lambda node_id: None

    # -- queries ------------------------------------------------------------

    def live_count(self) -> int:
        """Nodes alive or suspect, this one included: the ``n`` of every formula."""
        return sum(1 for n in self.nodes.values() if n.status in ("alive", "suspect"))

    def others(self, *statuses: Status) -> list[NodeInfo]:
        return [
            n
            for n in self.nodes.values()
            if n.node_id != self.local.node_id and (not statuses or n.status in statuses)
        ]

    # -- the rules ------------------------------------------------------------

    def alive(self, a: Alive) -> None:
        if a.node == self.local.node_id:
            # Our own news coming back is ignored; a higher incarnation than ours
            # is a former life of this node (a restart): outbid it.
            if a.incarnation > self.local.incarnation and not self.leaving:
                self.refute(a.incarnation)
            return
        state = self.nodes.get(a.node)
        if state is None:
            state = NodeInfo(
                a.node, a.address, "alive", a.incarnation, a.joined_at_ms, a.meta, self._clock.now()
            )
            self.nodes[a.node] = state
            self._broadcast(a.node, a)
            self.on_new(a.node)
            self._changed(state)
            return
        if a.incarnation <= state.incarnation:
            return
        if state.suspicion is not None:
            state.suspicion.cancel()
            state.suspicion = None
        was_live = state.status in ("alive", "suspect")
        state.address, state.incarnation, state.meta = a.address, a.incarnation, a.meta
        state.joined_at_ms = a.joined_at_ms
        if state.status != "alive":
            state.status, state.changed_at = "alive", self._clock.now()
        self._broadcast(a.node, a)
        if not was_live:
            self.on_new(a.node)
        self._changed(state)

    def suspect(self, s: Suspect) -> None:
        state = self.nodes.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        if state.suspicion is not None:
            if state.suspicion.confirm(s.source):
                self._broadcast(s.node, s)
            return
        if state.status != "alive":
            return
        if s.node == self.local.node_id:
            if not self.leaving:
                self.refute(s.incarnation)
            return
        state.incarnation = s.incarnation
        state.status, state.changed_at = "suspect", self._clock.now()
        n = self.live_count()
        wanted = self._timings.suspicion_mult - 2
        if n - 2 < wanted:
            wanted = 0
        low, high = suspicion_bounds(self._timings, n)
        state.suspicion = Suspicion(
            self._clock,
            s.source,
            wanted,
            low,
            high,
            lambda: self.dead(Dead(s.node, state.incarnation, self.local.node_id)),
        )
        self._broadcast(s.node, s)
        self._changed(state)

    def dead(self, d: Dead) -> None:
        state = self.nodes.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        if state.status in ("dead", "left"):
            return
        if d.node == self.local.node_id:
            if not self.leaving:
                self.refute(d.incarnation)
                return
            state.status = "left"  # our own leave, back from a peer or sent now
            state.changed_at = self._clock.now()
            self._changed(state)
            return
        if state.suspicion is not None:
            state.suspicion.cancel()
            state.suspicion = None
        state.incarnation = d.incarnation
        state.status = "left" if d.source == d.node else "dead"
        state.changed_at = self._clock.now()
        self._broadcast(d.node, d)
        self._changed(state)

    def refute(self, accused: int) -> None:
        """Announce this node alive at an incarnation above ``accused``."""
        local = self.local
        local.incarnation = max(local.incarnation + 1, accused + 1)
        self._on_refute()
        self._broadcast(local.node_id, local.alive_message())
        self._changed(local)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        local = self.local
        local.meta = dict(meta)
        local.incarnation += 1
        self._broadcast(local.node_id, local.alive_message())

    def leave(self) -> Dead:
        self.leaving = True
        d = Dead(self.local.node_id, self.local.incarnation, self.local.node_id)
        self.dead(d)
        self._broadcast(self.local.node_id, d)
        return d

    def merge(self, states: Iterable[NodeState]) -> None:
        """A peer's full state (push-pull). Its ``dead`` is only our ``suspect``:
        we may know better, so the node gets the time to refute (memberlist)."""
        for s in states:
            if s.status == "alive":
                self.alive(Alive(s.node, s.address, s.incarnation, s.joined_at_ms, s.meta))
            elif s.status == "left":
                self.dead(Dead(s.node, s.incarnation, s.node))
            else:
                self.suspect(Suspect(s.node, s.incarnation, self.local.node_id))

    def forget(self, older_than: float) -> None:
        """Drop nodes dead or gone since before ``older_than``."""
        for node_id, state in list(self.nodes.items()):
            gone = state.status in ("dead", "left") and state.changed_at < older_than
            if gone and node_id != self.local.node_id:
                del self.nodes[node_id]

    def _changed(self, state: NodeInfo) -> None:
        try:
            self._on_change(state.member())
        except Exception:  # a subscriber's bug must not break the protocol
            log.exception("a membership subscriber failed")
