"""``POST /messages``: send over REST, with the same idempotency as the WebSocket."""

from __future__ import annotations

from aiohttp import web

from chatd.core.views import ack_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, read_json


async def send(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    appended = await svc.messages.send(who, await read_json(request))
    if appended.created:
        svc.metrics.messages_in.labels("rest").inc()
    return json_response(ack_view(appended.message), 201 if appended.created else 200)
