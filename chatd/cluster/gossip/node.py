"""One gossip node: SWIM with Lifeguard, over an abstract transport and clock.

This is the whole protocol, and it implements ``chatd.cluster.membership.
Membership``. ``Gossip`` (``runtime``) runs it on asyncio with UDP and sealed
TCP streams; tests run many on a simulated network with a virtual clock.

- Failure detection: ``probe.Prober``. Member rules: ``state.MemberTable``.
- Dissemination: every update is queued (``broadcast.BroadcastQueue``) and
  piggybacked on pings and acks; every gossip interval, datagrams of queued
  updates also go to ``gossip_nodes`` random peers (and to nodes dead less than
  ``gossip_to_dead_s``, so a node wrongly declared dead hears it and refutes).
- Anti-entropy: every push-pull interval the full state is exchanged with one
  random live peer over a stream, and with one dead one (as serf reconnects),
  which is what heals a partition: each side learns it was declared dead and
  refutes. Joining is a push-pull with the seeds, retried while alone.
- Leaving: ``dead`` about oneself, sent at once to live peers and gossiped.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatd.cluster.gossip import codec
from chatd.cluster.gossip.base import Clock, Timer, Timings, Transport
from chatd.cluster.gossip.broadcast import BroadcastQueue
from chatd.cluster.gossip.codec import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Malformed,
    Message,
    Nack,
    Ping,
    PushPull,
    Suspect,
)
from chatd.cluster.gossip.probe import AckHandlers, Prober
from chatd.cluster.gossip.state import MemberTable, NodeInfo
from chatd.cluster.membership import Member
from chatd.cluster.seal import OVERHEAD

log = logging.getLogger(__name__)

#: A datagram's payload: 1400 bytes on the wire, the seal included.
MAX_PAYLOAD = codec.MAX_DATAGRAM - OVERHEAD
#: At most this many peers get a leaving node's goodbye directly.
LEAVE_FANOUT = 32


class Node:
    def __init__(
        self,
        node_id: str,
        address: str,
        transport: Transport,
        clock: Clock,
        *,
        timings: Timings | None = None,
        rng: random.Random | None = None,
        seeds: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        on_rtt: Callable[[str, float], None] = lambda node_id, seconds: None,
    ) -> None:
        self.node_id = node_id
        self.address = address
        self.timings = timings or Timings()
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._seeds = [s for s in seeds if s != address]
        self._subscribers: list[Callable[[Member], None]] = []
        #: Payloads refused by the codec, by reason (the seal counts its own).
        self.dropped: Counter[str] = Counter()
        self.queue = BroadcastQueue(self.timings.retransmit_mult)
        local = NodeInfo(node_id, address, "alive", 1, clock.wall_ms(), dict(meta or {}))
        self.table = MemberTable(
            local,
            self.timings,
            clock,
            self._queue_update,
            self._notify,
            lambda: self.prober.awareness.apply(1),
        )
        self.handlers = AckHandlers(clock)
        self.prober = Prober(
            self.table, self.timings, clock, self._rng, self.handlers, self._send, on_rtt
        )
        self.table.on_new = self.prober.add
        self._timers: dict[str, Timer] = {}
        self._join_backoff = 1.0
        self.running = False

    # -- Membership ------------------------------------------------------------

    def members(self) -> list[Member]:
        return [n.member() for n in self.table.nodes.values()]

    def alive(self) -> list[Member]:
        return [n.member() for n in self.table.nodes.values() if n.status in ("alive", "suspect")]

    def subscribe(self, on_change: Callable[[Member], None]) -> None:
        self._subscribers.append(on_change)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        if codec.meta_size(meta) > codec.MAX_META:
            raise ValueError(f"node meta must pack into {codec.MAX_META} bytes")
        if not self.running:  # told with the first alive and push-pull
            self.table.local.meta = dict(meta)
        elif dict(meta) != dict(self.table.local.meta):
            self.table.set_meta(meta)

    def member(self, node_id: str) -> Member | None:
        state = self.table.nodes.get(node_id)
        return state.member() if state is not None else None

    # -- lifecycle -------------------------------------------------------------

    def readdress(self, address: str) -> None:
        """Set the advertised address once it is known (a port chosen at bind), before start."""
        self.address = self.table.local.address = address
        self._seeds = [s for s in self._seeds if s != address]

    def start(self) -> None:
        self.running = True
        self.prober.start()
        self._every("gossip", lambda: self.timings.gossip_interval_s, self._gossip)
        self._every("push_pull", self._push_pull_interval, self._push_pull_tick)
        self._join_tick()

    def leave(self) -> None:
        """Say goodbye: peers mark this node ``left`` (not dead) and stop probing it."""
        if self.table.leaving:
            return
        self.prober.stop()
        goodbye = self.table.leave()
        peers = self.table.others("alive", "suspect")
        for peer in self._rng.sample(peers, min(LEAVE_FANOUT, len(peers))):
            self._send(peer.node_id, peer.address, [goodbye])

    def stop(self) -> None:
        self.running = False
        self.prober.stop()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.handlers.clear()
        for state in self.table.nodes.values():
            if state.suspicion is not None:
                state.suspicion.cancel()
                state.suspicion = None

    def _every(self, name: str, interval: Callable[[], float], action: Callable[[], None]) -> None:
        def tick() -> None:
            if not self.running:
                return
            self._timers[name] = self._clock.call_later(interval(), tick)
            action()

        self._timers[name] = self._clock.call_later(interval(), tick)

    # -- network in ------------------------------------------------------------

    def receive(self, payload: bytes, source: str) -> None:
        """One datagram's payload (already opened by the seal) from ``source``."""
        if not self.running:
            return
        try:
            to, messages = codec.decode_packet(payload)
        except Malformed as exc:
            self.dropped[exc.reason] += 1
            return
        if to != self.node_id:  # captured on its way to another node, played here
            self.dropped["wrong_destination"] += 1
            return
        for message in messages:
            self._handle(message, source)

    def _handle(self, m: Message, source: str) -> None:
        match m:
            case Ping():
                if m.target == self.node_id:
                    self._send(m.source, source, [Ack(m.seq)])
            case IndirectPing():
                self._relay(m, source)
            case Ack():
                self.handlers.ack(m.seq)
            case Nack():
                self.handlers.nack(m.seq)
            case Alive():
                self.table.alive(m)
            case Suspect():
                self.table.suspect(m)
            case Dead():
                self.table.dead(m)

    def _relay(self, m: IndirectPing, source: str) -> None:
        seq = self.handlers.next_seq()

        def acked() -> None:
            self._send(m.source, source, [Ack(m.seq)])

        def silent() -> None:
            if m.nack:
                self._send(m.source, source, [Nack(m.seq)])

        self.handlers.expect(seq, acked, None, self.timings.probe_timeout_s, silent)
        ping = Ping(seq, m.target, self.node_id, self.address)
        self._send(m.target, m.target_address, [ping])

    def answer_push_pull(self, payload: bytes) -> bytes | None:
        """A peer's full state in, ours out (after merging, so a refutation is in it)."""
        try:
            theirs = codec.decode_push_pull(payload)
        except Malformed as exc:
            self.dropped[exc.reason] += 1
            return None
        if theirs.to != self.node_id and not (theirs.join and not theirs.to):
            self.dropped["wrong_destination"] += 1
            return None
        if self.running:
            self.table.merge(theirs.nodes)
        answer = PushPull(self._full_state().nodes, to=theirs.source, source=self.node_id)
        return codec.encode_push_pull(answer)

    # -- network out -----------------------------------------------------------

    def _send(self, to: str, address: str, messages: Sequence[object]) -> None:
        """``messages`` and as many queued updates as fit, in one datagram for node ``to``."""
        encoded = [codec.encode(m) for m in messages]  # type: ignore[arg-type]
        budget = MAX_PAYLOAD - 3 - len(codec.destination(to)) - sum(len(e) for e in encoded)
        encoded += self.queue.take(budget, self.table.live_count())
        self._transport.send(address, codec.packet(to, encoded))

    def _queue_update(self, node_id: str, message: Message) -> None:
        self.queue.queue(node_id, codec.encode(message))

    def _notify(self, member: Member) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(member)
            except Exception:
                log.exception("a membership subscriber failed on %s", member.node_id)

    def _gossip(self) -> None:
        now = self._clock.now()
        self.table.forget(now - self.timings.dead_forget_s)
        if not len(self.queue):
            return
        targets = [
            n
            for n in self.table.others()
            if n.status in ("alive", "suspect")
            or (n.status == "dead" and now - n.changed_at < self.timings.gossip_to_dead_s)
        ]
        n = self.table.live_count()
        for target in self._rng.sample(targets, min(self.timings.gossip_nodes, len(targets))):
            budget = MAX_PAYLOAD - 3 - len(codec.destination(target.node_id))
            updates = self.queue.take(budget, n)
            if not updates:
                break
            self._transport.send(target.address, codec.packet(target.node_id, updates))

    def _full_state(self) -> PushPull:
        return PushPull(tuple(n.node_state() for n in self.table.nodes.values()))

    def _push_pull_interval(self) -> float:
        """memberlist scales it above 32 nodes, so the TCP load stays flat."""
        n = max(self.table.live_count(), 1)
        mult = math.ceil(math.log2(n) - math.log2(32)) + 1 if n > 32 else 1
        return self.timings.push_pull_interval_s * mult

    def push_pull(self, address: str, *, to: str = "", join: bool = False) -> None:
        """Exchange full states with node ``to`` at ``address`` (``to`` empty: a seed)."""

        def on_reply(data: bytes | None) -> None:
            if data is None or not self.running:
                return
            try:
                theirs = codec.decode_push_pull(data)
            except Malformed as exc:
                self.dropped[exc.reason] += 1
                return
            if theirs.to != self.node_id:
                self.dropped["wrong_destination"] += 1
                return
            self.table.merge(theirs.nodes)

        state = PushPull(self._full_state().nodes, join, to, self.node_id)
        self._transport.push_pull(address, codec.encode_push_pull(state), on_reply)

    def _push_pull_tick(self) -> None:
        live = self.table.others("alive")
        if live:
            peer = self._rng.choice(live)
            self.push_pull(peer.address, to=peer.node_id)
        dead = self.table.others("dead")
        if dead:  # a partition that healed is found this way
            peer = self._rng.choice(dead)
            self.push_pull(peer.address, to=peer.node_id)

    def _join_tick(self) -> None:
        """Push-pull with every seed while no other node is known alive."""
        if not self.running or not self._seeds:
            return
        if not self.table.others("alive", "suspect"):
            for seed in self._seeds:
                self.push_pull(seed, join=True)
            delay = self._join_backoff
            self._join_backoff = min(self._join_backoff * 2, self.timings.push_pull_interval_s)
        else:
            delay = self.timings.push_pull_interval_s
            self._join_backoff = 1.0
        self._timers["join"] = self._clock.call_later(delay, self._join_tick)
