"""``/health`` and ``/metrics``: for load balancers and Prometheus, without auth."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from chatd.gateway.context import services
from chatd.gateway.http import json_response


async def health(request: web.Request) -> web.Response:
    svc = services(request)
    ok = await svc.storage.ping()
    body = {
        "status": "ok" if ok else "unavailable",
        "node_id": svc.node_id,
        "version": svc.version,
        "uptime_s": round(time.monotonic() - svc.started, 3),
        "connections": len(svc.sessions),
    }
    return json_response(body, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    svc = services(request)
    response = web.Response(body=svc.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
