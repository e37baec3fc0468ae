"""``GET /cluster``: the nodes of the cluster as this node sees them (admins only)."""

from __future__ import annotations

import time

from aiohttp import web

from chatd.core.errors import forbidden
from chatd.core.ids import format_ts
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response


async def status(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    if not who.is_admin:
        raise forbidden("only admins may see the cluster")
    if svc.cluster is not None:
        return json_response(svc.cluster.describe(len(svc.sessions)))
    # A server alone is a cluster of one; it has no cluster address.
    started_ms = int((time.time() - (time.monotonic() - svc.started)) * 1000)
    node = {
        "node_id": svc.node_id,
        "address": None,
        "status": "alive",
        "connections": len(svc.sessions),
        "joined_at": format_ts(started_ms),
    }
    return json_response({"node_id": svc.node_id, "nodes": [node]})
