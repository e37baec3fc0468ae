"""Did every device get every message it should, once, in order? The verdict of a run.

A benchmark of a lossy server is no benchmark, so each workload tracks, per
device and chat, the seqs that arrived (``Stream``) and ends its result with
``problems``: one plain sentence per kind of fault (lost, duplicated,
reordered, failed connections, wrong pages). ``scripts/bench.py`` prints them
and exits non-zero when there is any.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Stream:
    """The seqs of one chat that reached one device, in arrival order, as a bitmap."""

    __slots__ = ("count", "last", "reordered", "repeated", "seen")

    def __init__(self) -> None:
        self.seen = bytearray()
        self.last = 0
        self.count = 0
        self.repeated = 0
        self.reordered = 0

    def add(self, seq: int) -> None:
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(seq + 1 - len(seen) + 1024))
        self.count += 1
        if seen[seq]:
            self.repeated += 1
            return
        seen[seq] = 1
        if seq < self.last:
            self.reordered += 1  # arrived after a later message of the same chat
        else:
            self.last = seq

    def missing(self, expected: Iterable[int]) -> list[int]:
        """The seqs of ``expected`` that never arrived."""
        seen, size = self.seen, len(self.seen)
        return [s for s in expected if s >= size or not seen[s]]


class Tally:
    """Sums over many streams, mergeable across processes (plain JSON)."""

    def __init__(self) -> None:
        self.expected = 0
        self.lost = 0
        self.repeated = 0
        self.reordered = 0
        self.example = ""  # one lost message, to start looking from

    def add(self, stream: Stream, expected: Iterable[int], where: str) -> None:
        wanted = list(expected)
        missing = stream.missing(wanted)
        self.expected += len(wanted)
        self.lost += len(missing)
        self.repeated += stream.repeated
        self.reordered += stream.reordered
        if missing and not self.example:
            self.example = f"{where} seq {missing[0]}"

    def merge(self, other: dict[str, Any]) -> None:
        self.expected += other["expected"]
        self.lost += other["lost"]
        self.repeated += other["repeated"]
        self.reordered += other["reordered"]
        self.example = self.example or other["example"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "lost": self.lost,
            "repeated": self.repeated,
            "reordered": self.reordered,
            "example": self.example,
        }

    def problems(self, what: str = "deliveries") -> list[str]:
        out = []
        if self.lost:
            out.append(f"lost {self.lost} of {self.expected} {what} (first: {self.example})")
        if self.repeated:
            out.append(f"duplicated {self.repeated} {what}")
        if self.reordered:
            out.append(f"reordered {self.reordered} {what} (a later seq came first)")
        return out

    def figures(self) -> dict[str, int]:
        return {"lost": self.lost, "duplicated": self.repeated, "reordered": self.reordered}


def counted(count: int, what: str, example: Any = None) -> list[str]:
    """``["3 reconnects failed, e.g. ..."]`` when ``count`` is not 0, else no problem."""
    if not count:
        return []
    return [f"{count} {what}" + (f", e.g. {example}" if example else "")]
