"""chatd/gateway/rawsocket.py against the aiohttp installed: its workarounds still hold.

These rest on aiohttp behaviour that is not public API; this test pins it to the
version range pyproject.toml declares, so an upgrade that breaks it fails here
rather than on a user's server.
"""

from __future__ import annotations

from importlib.metadata import requires, version

from aiohttp import WSMsgType, web
from packaging.requirements import Requirement

from chatd.gateway.rawsocket import as_transport, drop_http_parser, text_frame


def test_the_installed_aiohttp_is_in_the_declared_range() -> None:
    declared = [Requirement(r) for r in requires("chatd") or []]
    (aiohttp_req,) = [r for r in declared if r.name == "aiohttp" and not r.marker]
    assert version("aiohttp") in aiohttp_req.specifier, (
        f"aiohttp {version('aiohttp')} is outside {aiohttp_req.specifier}: "
        "re-check chatd/gateway/rawsocket.py before widening the range"
    )


async def test_raw_frames_interleave_with_aiohttps_own_and_the_socket_lives_on(
    aiohttp_client,
) -> None:
    payloads = [b"a" * 10, b"b" * 300, b"c" * 70_000]  # each length encoding of RFC 6455
    dropped: list[bool] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        transport = as_transport(request.transport)
        assert transport is not None
        drop_http_parser(request)
        dropped.append(request.protocol._parser is None)  # the memory is really freed
        for payload in payloads:
            transport.writelines([text_frame(payload)])
            await ws.send_str("via aiohttp")
        msg = await ws.receive()  # reading still works without the HTTP parser
        transport.writelines([text_frame(b"echo:" + msg.data.encode())])
        await ws.close(code=1000, message=b"bye")
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        got = []
        for _ in range(2 * len(payloads)):
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT
            got.append(msg.data)
        await ws.send_str("ping")
        echo = await ws.receive()
        closing = await ws.receive()
    expected = [x for p in payloads for x in (p.decode(), "via aiohttp")]
    assert got == expected
    assert echo.data == "echo:ping"
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1000
    assert dropped == [True]
