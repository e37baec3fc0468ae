"""A socket that finishes its upgrade after shutdown began is still told to come back.

The handshake check refuses new sockets once shutdown starts, but one whose
upgrade was already under way is registered afterwards: it must get the
``reconnect`` frame, and only then the 1012 close.
"""

from __future__ import annotations

import orjson
from aiohttp import WSMsgType, web

from chatd.core.auth import Caller
from chatd.gateway.rawsocket import as_transport
from chatd.gateway.sessions import CLOSE_RESTART, Session, SessionRegistry
from chatd.metrics import Metrics


async def test_a_late_upgrade_gets_reconnect_before_1012(aiohttp_client) -> None:
    registry = SessionRegistry()
    metrics = Metrics()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        registry.closing = True  # shutdown began while this upgrade was under way
        caller = Caller("u1", "d1", "alice")
        transport = as_transport(request.transport)
        session = Session(ws, caller, 64, metrics, transport, registry.outbox)
        registry.add(session)
        async for _ in ws:  # until the server side closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        first = await ws.receive(timeout=5)
        assert first.type is WSMsgType.TEXT
        frame = orjson.loads(first.data)
        assert frame["type"] == "reconnect" and frame["data"]["retry_after_ms"] > 0
        closing = await ws.receive(timeout=5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == CLOSE_RESTART
