"""``GET /cluster``: the nodes of the cluster as this node sees them (admins only)."""

from __future__ import annotations

from aiohttp import web

from chatd.core.errors import forbidden
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response


async def status(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    if not who.is_admin:
        raise forbidden("only admins may see the cluster")
    return json_response({"node_id": svc.node_id, "nodes": svc.stats.nodes()})
