"""``/health`` and ``/metrics``: for load balancers and Prometheus, without auth."""

from __future__ import annotations

import functools
import time
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from chatd.gateway.context import services
from chatd.gateway.http import json_response


async def health(request: web.Request) -> web.Response:
    """200 ``ok``, or 503 ``unavailable`` with a ``reason`` while storage does not
    answer or writes fail (a full disk included), as the contract says."""
    svc = services(request)
    reason = None if await svc.storage.ping() else "storage does not answer or its writes fail"
    if reason is None:
        reason = await svc.media.write_problem()
    body = {
        "status": "ok" if reason is None else "unavailable",
        "node_id": svc.node_id,
        "version": svc.version,
        "uptime_s": round(time.monotonic() - svc.started, 3),
        "connections": len(svc.sessions),
    }
    if svc.cluster is not None:
        body["cluster"] = {"nodes_alive": svc.cluster.nodes_alive()}
    if reason is not None:
        body["reason"] = reason
    return json_response(body, 200 if reason is None else 503)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of the REST API (``chatd/openapi.yaml``) as JSON."""
    return web.Response(body=openapi_json(), content_type="application/json")


@functools.cache
def openapi_json() -> bytes:
    """Parsed once, on first request: the YAML is the one source, with comments,
    and no build step has to keep a JSON copy in step with it."""
    import orjson
    import yaml

    text = resources.files("chatd").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return orjson.dumps(yaml.safe_load(text))


async def metrics(request: web.Request) -> web.Response:
    svc = services(request)
    response = web.Response(body=svc.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
