"""Prometheus metrics of one chatd process (``GET /api/v1/metrics``).

One registry per app instance, not the library's global one, so several servers
in one process (the tests) keep their figures apart.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RepeatedHistogram(Collector):
    """A histogram that records ``count`` samples of one value in one step.

    A fan-out to 256 sockets stamps 256 frames with the same accept time;
    ``Histogram.observe`` once per frame (a lock and two increments each) was a
    visible share of the delivery cost, and the library has no public way to
    observe a value n times. So this is a custom collector (the library's public
    extension point): plain counters, exposed as a histogram family when
    scraped. Updated from the event loop only, like every caller of Metrics.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = [float(b) for b in buckets]
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float, count: int = 1) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += count
        self._sum += value * count

    def collect(self) -> Iterator[HistogramMetricFamily]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip([*self._bounds, math.inf], self._counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=self._sum
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("chatd_connections", "Open WebSocket connections", registry=r)
        self.messages_in = Counter(
            "chatd_messages_in", "Messages accepted and stored", ["transport"], registry=r
        )
        self.messages_out = Counter(
            "chatd_messages_out", "new_message frames written to sockets", registry=r
        )
        self.frames_dropped = Counter(
            "chatd_slow_consumers",
            "Connections closed because their send queue was full",
            registry=r,
        )
        self._delivery_latency = RepeatedHistogram(
            "chatd_delivery_latency_seconds",
            "From a message being accepted to its frame being written to a recipient socket",
            _LATENCY_BUCKETS,
            r,
        )
        self.storage_latency = Histogram(
            "chatd_storage_latency_seconds",
            "Storage operations (reads, group commits)",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "chatd_errors", "Errors answered, by contract code", ["code"], registry=r
        )
        self.media_uploaded_bytes = Counter(
            "chatd_media_uploaded_bytes", "Bytes of accepted uploads, as stored", registry=r
        )
        self.media_served_bytes = Counter(
            "chatd_media_served_bytes",
            "Bytes of media sent to clients, files and thumbnails",
            ["what"],
            registry=r,
        )
        self.media_thumbnail_seconds = Histogram(
            "chatd_media_thumbnail_seconds",
            "Making one thumbnail (decode, scale, encode) in a media worker process",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )

        self.push_sent = Counter(
            "chatd_push_sent",
            "Push notifications a push service accepted",
            ["provider"],
            registry=r,
        )
        self.push_failed = Counter(
            "chatd_push_failed",
            "Push attempts that failed (retried, gone or refused), by reason",
            ["provider", "reason"],
            registry=r,
        )
        self.push_dead = Counter(
            "chatd_push_dead", "Push notifications given up (dead)", ["provider"], registry=r
        )
        self.push_outbox_depth = Gauge(
            "chatd_push_outbox_depth", "Push notifications waiting in the outbox", registry=r
        )

    def observe_delivery(self, seconds: float, count: int = 1) -> None:
        """``count`` frames written ``seconds`` after their message was accepted."""
        self._delivery_latency.observe(seconds, count)

    def observe_storage(self, op: str, seconds: float) -> None:
        self.storage_latency.labels(op).observe(seconds)

    def observe_media(self, what: str, seconds: float) -> None:
        if what == "thumbnail":
            self.media_thumbnail_seconds.observe(seconds)

    def messages_accepted(self) -> float:
        """Messages accepted since start, every transport (for the admin dashboard)."""
        return sum(
            sample.value
            for family in self.messages_in.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def delivery_buckets(self) -> tuple[list[float], list[int]]:
        """The delivery latency histogram: bucket upper bounds (s) and a copy of the
        per-bucket counts (one more than the bounds: the last is +Inf)."""
        return list(self._delivery_latency._bounds), list(self._delivery_latency._counts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
