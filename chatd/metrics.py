"""Prometheus metrics of one chatd process (``GET /api/v1/metrics``).

One registry per app instance, not the library's global one, so several servers
in one process (the tests) keep their figures apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


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
        self.delivery_latency = Histogram(
            "chatd_delivery_latency_seconds",
            "From a message being accepted to its frame being written to a recipient socket",
            buckets=_LATENCY_BUCKETS,
            registry=r,
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

    def observe_storage(self, op: str, seconds: float) -> None:
        self.storage_latency.labels(op).observe(seconds)

    def observe_media(self, what: str, seconds: float) -> None:
        if what == "thumbnail":
            self.media_thumbnail_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
