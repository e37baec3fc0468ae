"""A simulated network and a virtual clock for gossip nodes, deterministic by seed.

Datagrams are lost with probability ``loss`` and delayed uniformly within
``delay`` (so they also arrive out of order); push-pull streams are reliable
but take two delays. ``partition`` cuts groups of addresses apart, ``kill``
silences a node as kill -9 would. Nothing runs until the clock is advanced:
``run_for`` / ``run_until`` execute the timers in time order.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from typing import Any

from chatd.cluster.gossip.base import Timings
from chatd.cluster.gossip.node import Node


class _Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    EPOCH_MS = 1_700_000_000_000

    def __init__(self) -> None:
        self._now = 0.0
        self._heap: list[tuple[float, int, _Timer, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall_ms(self) -> int:
        return self.EPOCH_MS + int(self._now * 1000)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer()
        heapq.heappush(
            self._heap, (self._now + max(delay, 0.0), next(self._order), timer, callback)
        )
        return timer

    def run_for(self, seconds: float) -> None:
        self._run(self._now + seconds, lambda: False)

    def run_until(self, condition: Callable[[], bool], timeout: float) -> float | None:
        """Advance until ``condition()`` holds (checked after every event); the time
        it took, or None if ``timeout`` virtual seconds passed first."""
        start = self._now
        if condition():
            return 0.0
        return self._now - start if self._run(start + timeout, condition) else None

    def _run(self, until: float, stop: Callable[[], bool]) -> bool:
        while self._heap and self._heap[0][0] <= until:
            when, _, timer, callback = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = when
            callback()
            if stop():
                return True
        self._now = until
        return False


class SimNetwork:
    def __init__(
        self,
        seed: int = 1,
        *,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.01),
        timings: Timings | None = None,
    ) -> None:
        self.clock = VirtualClock()
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.timings = timings or Timings()
        self.nodes: dict[str, Node] = {}
        self._dead: set[str] = set()
        self._group: dict[str, int] = {}
        #: Every datagram handed to the network: (time, from, to, payload).
        self.sent: list[tuple[float, str, str, bytes]] = []

    def add(self, name: str, seeds: Iterable[str] = (), **options: Any) -> Node:
        """A node named ``name`` at address ``name:7946``, started."""
        address = f"{name}:7946"
        node = Node(
            name,
            address,
            _SimTransport(self, address),
            self.clock,
            timings=options.pop("timings", self.timings),
            rng=random.Random(self.rng.random()),
            seeds=[f"{s}:7946" for s in seeds],
            **options,
        )
        self.nodes[address] = node
        self._dead.discard(address)
        node.start()
        return node

    def kill(self, name: str) -> None:
        """The node stops at once and answers nothing (kill -9)."""
        address = f"{name}:7946"
        self.nodes[address].stop()
        self._dead.add(address)

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group reach each other (names not listed: group 0)."""
        self._group = {f"{n}:7946": i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self._group = {}

    def reachable(self, a: str, b: str) -> bool:
        return (
            b in self.nodes
            and b not in self._dead
            and a not in self._dead
            and self._group.get(a, 0) == self._group.get(b, 0)
        )

    def _latency(self) -> float:
        return self.rng.uniform(*self.delay)

    def send(self, source: str, address: str, payload: bytes) -> None:
        self.sent.append((self.clock.now(), source, address, payload))
        if self.rng.random() < self.loss or not self.reachable(source, address):
            return
        node = self.nodes[address]
        self.clock.call_later(
            self._latency(),
            lambda: node.receive(payload, source) if address not in self._dead else None,
        )

    def push_pull(
        self, source: str, address: str, payload: bytes, on_reply: Callable[[bytes | None], None]
    ) -> None:
        if not self.reachable(source, address):
            self.clock.call_later(1.0, lambda: on_reply(None))  # the connect timeout
            return

        def arrive() -> None:
            if not self.reachable(source, address):
                on_reply(None)
                return
            reply = self.nodes[address].answer_push_pull(payload)
            self.clock.call_later(
                self._latency(),
                lambda: on_reply(reply if self.reachable(address, source) else None),
            )

        self.clock.call_later(self._latency(), arrive)


class _SimTransport:
    def __init__(self, network: SimNetwork, address: str) -> None:
        self._network = network
        self._address = address

    def send(self, address: str, payload: bytes) -> None:
        self._network.send(self._address, address, payload)

    def push_pull(
        self, address: str, payload: bytes, on_reply: Callable[[bytes | None], None]
    ) -> None:
        self._network.push_pull(self._address, address, payload, on_reply)
