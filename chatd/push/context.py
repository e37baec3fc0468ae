"""What chatd hands a push provider's factory besides its ``[push.<name>]`` table."""

from __future__ import annotations

from dataclasses import dataclass

from chatd.plugins import PluginContext


@dataclass(frozen=True)
class PushContext(PluginContext):
    """A ``PluginContext`` plus the ``[push]`` settings every provider must honour."""

    #: ``[push] allow_private_endpoints``: device endpoints may be loopback/private (tests, LANs).
    allow_private_endpoints: bool = False
    #: ``[push] timeout_ms`` / 1000: the most one request to a push service may take.
    timeout_s: float = 10.0
