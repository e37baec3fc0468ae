"""Read ``GET /metrics`` the way Prometheus does, so tests compare numbers, not substrings."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from chatd.client import ChatdClient


class Samples:
    """One scrape: every sample by its name (``_total``, ``_count``...) and labels."""

    def __init__(self, text: str) -> None:
        # The text format carries each counter's start time as a "<name>_created" gauge.
        self.families = {
            f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
        }
        self._values = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def get(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not exported yet (a counter at 0)."""
        return self._values.get((name, frozenset(labels.items())), 0.0)

    def since(self, before: Samples, name: str, **labels: str) -> float:
        """How much the sample grew from ``before`` to this scrape."""
        return self.get(name, **labels) - before.get(name, **labels)


async def scrape(client: ChatdClient) -> Samples:
    return Samples(await client.metrics())
