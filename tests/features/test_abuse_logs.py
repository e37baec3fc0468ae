"""Junk requests carrying tokens: nothing secret in the log, and no log flood."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatd.client import ChatdClient
from tests.abuse_checks import assert_still_healthy
from tests.conftest import PASSWORD
from tests.subprocess_server import ServerProcess

SECRETS = ("QUERYSECRETqq", "HEADERSECRETww", "ESCAPEDSECRETee")
JUNK = (
    # A control character in the query: aiohttp logs the raw request line.
    f"GET /ws?token={SECRETS[0]}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    # A malformed Authorization header: aiohttp logs the raw header line.
    f"GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRETS[1]}\x01\r\n\r\n".encode(),
    f"GET /api/v1/ws?a=1&token={SECRETS[2]}\x02x HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
)


async def send_junk(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(64), 5)
    finally:
        writer.close()


async def test_junk_with_tokens_leaves_no_token_and_a_bounded_log(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", {"log": {"repeats_per_minute": 5}})
    await server.start()
    try:
        async with ChatdClient(server.url) as bob, ChatdClient(server.url) as carol:
            for client, name in ((bob, "bob"), (carol, "carol")):
                await client.register(name, PASSWORD)
                await client.login(name, PASSWORD)
            async with carol.connect() as carol_ws:
                for _ in range(20):
                    answers = await asyncio.gather(*(send_junk(server.port, j) for j in JUNK))
                    assert all(a.startswith(b"HTTP/1.") and b" 400 " in a for a in answers)
                await assert_still_healthy(server.url, bob, carol, carol_ws)
    finally:
        server.stop()
    log = await asyncio.to_thread(Path(server.log.name).read_text)
    assert not any(secret in log for secret in SECRETS)
    assert "token=<redacted>" in log and "Authorization: <redacted>" in log
    # 60 bad requests of one kind: five logged, the rest only counted.
    assert log.count("Error handling request") == 5
