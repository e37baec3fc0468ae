"""What one socket is sent at its edges: after a late upgrade, and right after its replay.

Real sockets on a bare aiohttp app, with the gateway's ``Session`` driven
directly: these are races that the whole server makes rare, so the tests set
up the moment itself.
"""

from __future__ import annotations

import orjson
from aiohttp import WSMsgType, web

from chatd.core.auth import Caller
from chatd.gateway.rawsocket import as_transport
from chatd.gateway.sessions import CLOSE_RESTART, Session, SessionRegistry, SocketLimits
from chatd.metrics import Metrics


async def test_a_late_upgrade_gets_reconnect_before_1012(aiohttp_client) -> None:
    """The handshake check refuses new sockets once shutdown starts, but one whose
    upgrade was already under way is registered afterwards: it must get the
    ``reconnect`` frame, and only then the 1012 close."""
    registry = SessionRegistry()
    metrics = Metrics()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        registry.closing = True  # shutdown began while this upgrade was under way
        caller = Caller("u1", "d1", "alice")
        transport = as_transport(request.transport)
        session = Session(ws, caller, SocketLimits(), metrics, transport, registry.outbox)
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


async def test_a_message_the_replay_sent_is_not_sent_again_live(aiohttp_client) -> None:
    """A message stored before the replay read it may be released to the sockets
    after the replay ended (its chat's line waited): the device gets it once."""
    from chatd.core.events import Event
    from chatd.gateway.rawsocket import text_frame
    from chatd.gateway.sessions import encode

    registry = SessionRegistry()
    metrics = Metrics()

    def event(seq: int, chat: str = "c") -> tuple[bytes, Event]:
        data = {"chat_id": chat, "seq": seq}
        return text_frame(encode("new_message", data)), Event("new_message", data, chat, seq)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        caller = Caller("u1", "d1", "alice")
        transport = as_transport(request.transport)
        session = Session(ws, caller, SocketLimits(), metrics, transport, registry.outbox)
        session.deliver(*event(4))  # live while replaying: held, and covered by it
        session.end_sync({"c": 5})  # the replay sent 1..5
        for seq in (5, 6, 7):  # 5 released late by its line: the replay had it
            session.deliver(*event(seq))
        session.deliver(*event(3, "other"))  # a chat the replay did not touch
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        got = [orjson.loads((await ws.receive(timeout=5)).data)["data"] for _ in range(3)]
    assert got == [
        {"chat_id": "c", "seq": 6},
        {"chat_id": "c", "seq": 7},
        {"chat_id": "other", "seq": 3},
    ]
