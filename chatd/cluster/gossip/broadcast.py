"""What a node has to tell the cluster, retransmitted a bounded number of times.

As memberlist's ``TransmitLimitedQueue``: each update (an ``alive``, ``suspect``
or ``dead``) is piggybacked on outgoing packets, the least transmitted first
(newest first among equals), and dropped after ``retransmit_mult *
ceil(log10(n + 1))`` sends, which is enough for an epidemic to reach every
node with high probability. A newer update about a node replaces the queued one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field


def retransmit_limit(mult: int, nodes: int) -> int:
    return mult * math.ceil(math.log10(nodes + 1))


@dataclass(slots=True)
class _Item:
    key: str
    payload: bytes
    order: int
    transmits: int = field(default=0)


class BroadcastQueue:
    def __init__(self, retransmit_mult: int, max_items: int = 4096) -> None:
        self._mult = retransmit_mult
        self._max = max_items
        self._items: dict[str, _Item] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: str, payload: bytes) -> None:
        """Queue ``payload`` (an encoded message) about ``key``, replacing the old one."""
        self._items[key] = _Item(key, payload, next(self._order))
        if len(self._items) > self._max:  # drop the most sent, oldest first
            worst = max(self._items.values(), key=lambda i: (i.transmits, -i.order))
            del self._items[worst.key]

    def take(self, budget: int, nodes: int, overhead: int = 0) -> list[bytes]:
        """Payloads that fit in ``budget`` bytes (``overhead`` more each), counted as sent."""
        if not self._items:
            return []
        limit = retransmit_limit(self._mult, nodes)
        chosen: list[bytes] = []
        for item in sorted(self._items.values(), key=lambda i: (i.transmits, -i.order)):
            cost = len(item.payload) + overhead
            if cost > budget:
                continue
            budget -= cost
            chosen.append(item.payload)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[item.key]
            if budget <= overhead:
                break
        return chosen

    def clear(self) -> None:
        self._items.clear()
