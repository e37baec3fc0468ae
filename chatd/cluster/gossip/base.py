"""What the protocol needs from the world: a clock, timers and a network.

The protocol (``node.Node``) runs only against these, so tests drive it with a
simulated network and a virtual clock (``chatd.testing.gossipnet``), and the
server with asyncio, UDP and sealed TCP streams (``transport``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: timeouts and intervals."""

    def wall_ms(self) -> int:
        """Epoch milliseconds: ``joined_at``."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``delay`` seconds unless the timer is cancelled."""


class Transport(Protocol):
    def send(self, address: str, payload: bytes) -> None:
        """One datagram to ``address`` (``host:port``), best effort."""

    def push_pull(
        self, address: str, payload: bytes, on_reply: Callable[[bytes | None], None]
    ) -> None:
        """Send our full state to ``address`` over a stream; ``on_reply`` gets its
        state, or ``None`` when it cannot be reached."""


@dataclass(frozen=True)
class Timings:
    """memberlist's DefaultLANConfig, but a suspicion lasts at most 2x its minimum
    (``suspicion_max_timeout_mult``) so a dead node is ``dead`` within 15 s."""

    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 2
    retransmit_mult: int = 4
    awareness_max_multiplier: int = 8
    gossip_interval_s: float = 0.2
    gossip_nodes: int = 3
    gossip_to_dead_s: float = 30.0
    push_pull_interval_s: float = 30.0
    #: A node dead or gone this long is forgotten (no longer listed).
    dead_forget_s: float = 3600.0
