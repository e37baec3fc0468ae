"""Each configuration key does what config.example.toml says it does.

One test per key, each with a server configured with a value other than the
default, asserting what a user or an operator would notice. The ``[auth]`` keys
are in test_auth_policy.py, ``max_group_members`` in test_group_scale.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatd.app import build_app
from chatd.client import ApiError, ChatdClient
from chatd.gateway.context import SERVICES
from tests import media_files as mf
from tests.conftest import PASSWORD, test_config
from tests.subprocess_server import ServerProcess


def configure(server: ServerProcess, section: str, **keys: Any) -> None:
    """Add ``keys`` to one table of a not yet started server's config file."""
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    text = server.config.read_text()
    header = f"[{section}]\n"
    text = text.replace(header, header + lines, 1) if header in text else f"{text}\n{header}{lines}"
    server.config.write_text(text)


async def signed_in(url: str, name: str) -> ChatdClient:
    client = ChatdClient(url)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    return client


# -- [server] ------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"server": {"node_id": "edge-7"}}], ids=["edge-7"])
async def test_node_id_names_the_node_in_health_and_hello(user, server, tmp_path):
    alice = await user()
    assert (await alice.health())["node_id"] == "edge-7"
    async with alice.connect() as ws:
        assert ws.hello is not None and ws.hello["node_id"] == "edge-7"
    assert not (tmp_path / "data" / "node_id").exists()


async def test_without_node_id_a_name_is_made_once_and_kept(
    aiohttp_server, server, server_overrides, tmp_path
):
    async with ChatdClient(str(server.make_url(""))) as anonymous:
        first = (await anonymous.health())["node_id"]
    assert first.startswith("node-")
    assert (tmp_path / "data" / "node_id").read_text().strip() == first
    await server.close()
    again = await aiohttp_server(build_app(test_config(tmp_path / "data", server_overrides)))
    async with ChatdClient(str(again.make_url(""))) as anonymous:
        assert (await anonymous.health())["node_id"] == first


BIG_FILE = 24 * 1024 * 1024  # more than the socket buffers between client and server hold


async def _held_download(
    client: ChatdClient, media_id: str, started: asyncio.Event, release: asyncio.Event
) -> int:
    """Download a media, pausing after the first bytes until ``release``; the bytes read."""
    headers = {"Authorization": f"Bearer {client.token}"}
    async with client._http().get(f"{client.api_url}/media/{media_id}", headers=headers) as r:
        assert r.status == 200
        got = len(await r.content.readexactly(65536))
        started.set()  # the server is now blocked writing the rest
        await release.wait()
        return got + len(await r.read())


@pytest.mark.parametrize(
    ("timeout_s", "finishes"), [(60.0, True), (0.5, False)], ids=["long", "short"]
)
async def test_shutdown_timeout_s_bounds_the_wait_for_open_requests(tmp_path, timeout_s, finishes):
    server = ServerProcess(tmp_path / "data")
    configure(server, "server", shutdown_timeout_s=timeout_s)
    await server.start()
    started, release = asyncio.Event(), asyncio.Event()
    try:
        async with await signed_in(server.url, "alice") as alice:
            media = await alice.upload_media(b"a" * BIG_FILE, "text/plain")
            download = asyncio.create_task(
                _held_download(alice, media["media_id"], started, release)
            )
            async with alice.connect(reconnect=False) as ws:
                await asyncio.wait_for(started.wait(), 30)
                server.kill(signal.SIGTERM)
                await ws.next_event("reconnect", timeout=10)  # shutdown has begun
            if finishes:
                release.set()
                assert await asyncio.wait_for(download, 60) == BIG_FILE
                assert await server.wait(30) == 0
            else:
                began = time.monotonic()
                assert await server.wait(30) == 0  # while the download is still held
                # The default (10 s) would hold it at least 10 s; 0.5 s lets go at once.
                assert time.monotonic() - began < 9
                release.set()
                with pytest.raises(aiohttp.ClientError):
                    await asyncio.wait_for(download, 30)
    finally:
        release.set()
        server.stop()


@pytest.mark.parametrize(
    ("level", "shows_info"), [("debug", True), ("info", True), ("warning", False)]
)
async def test_log_level_filters_the_server_log(tmp_path, level, shows_info):
    server = ServerProcess(tmp_path / "data")
    configure(server, "log", level=level)
    await server.start()
    try:
        async with (
            await signed_in(server.url, "alice") as alice,
            await signed_in(server.url, "bob") as bob,
        ):
            await alice.send_message(recipient_id=bob.user_id, content="words for bob only")
    finally:
        server.stop()
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert ("chatd.app: chatd" in log and " ready" in log) == shows_info, log
    assert (" INFO " in log) == shows_info
    assert "words for bob only" not in log and "argon2" not in log  # not even at debug


# -- [storage.sqlite] ----------------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("config_overrides", "pragma"),
    [
        ({}, 2),
        ({"storage": {"sqlite": {"synchronous": "normal"}}}, 1),
        ({"storage": {"sqlite": {"synchronous": "EXTRA"}}}, 3),
    ],
    ids=["default-full", "normal", "extra"],
)
async def test_synchronous_sets_sqlite_durability(user, server, pragma):
    alice, bob = await user(), await user()
    await alice.send_message(recipient_id=bob.user_id, content="stored")
    # The setting lives on the connection that commits: ask it, in the writer.
    db = server.app[SERVICES].storage.db
    found = await db.job(lambda conn: conn.execute("PRAGMA synchronous").fetchall())
    assert found == [(pragma,)]


async def test_synchronous_normal_keeps_acknowledged_messages_through_a_crash(tmp_path):
    server = ServerProcess(tmp_path / "data")
    configure(server, "storage.sqlite", synchronous="NORMAL")
    await server.start()
    try:
        async with (
            await signed_in(server.url, "alice") as alice,
            await signed_in(server.url, "bob") as bob,
        ):
            async with alice.connect(reconnect=False) as ws:
                first = await ws.send_message(recipient_id=bob.user_id, content="0")
                await asyncio.gather(
                    *(
                        ws.send_message(chat_id=first["chat_id"], content=str(i))
                        for i in range(1, 50)
                    )
                )
                server.kill()  # SIGKILL: chatd crashes, the machine does not
            assert await server.wait() == -signal.SIGKILL
            await server.start()
            page = await bob.messages(first["chat_id"], after_seq=0)
            assert [m["content"] for m in page["messages"]] == [str(i) for i in range(50)]
    finally:
        server.stop()


# -- [media] -------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_overrides", [{"media": {"allowed_types": ["text/plain"]}}], ids=["text-only"]
)
async def test_allowed_types_limits_what_may_be_uploaded(user):
    alice = await user()
    assert (await alice.upload_media(b"plain words", "text/plain"))["mime_type"] == "text/plain"
    for data, declared in ((mf.png(), "image/png"), (b"a,b\n1,2\n", "text/csv")):
        with pytest.raises(ApiError) as err:
            await alice.upload_media(data, declared)
        assert (err.value.status, err.value.code) == (415, "unsupported_media_type"), declared


def _media_workers() -> set[int]:
    """Processes forked by this process's multiprocessing fork server (the media workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    forkservers = {
        pid
        for pid, parent in parents.items()
        if parent == os.getpid() and b"forkserver" in _cmdline(pid)
    }
    return {pid for pid, parent in parents.items() if parent in forkservers}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize(
    ("config_overrides", "workers"),
    [({"media": {"workers": 1}}, 1), ({"media": {"workers": 3}}, 3)],
    ids=["1", "3"],
)
async def test_workers_is_the_number_of_media_processes(user, workers):
    alice = await user()
    assert _media_workers() == set()  # started on the first file, not before
    photo = await alice.upload_media(mf.png(), "image/png")
    assert photo["thumbnail_url"] is not None
    assert len(_media_workers()) == workers


@pytest.mark.parametrize(
    "config_overrides",
    [{"media": {"retention_grace_hours": 0.001, "retention_interval_minutes": 0.005}}],
    ids=["3.6s-grace-0.3s-sweeps"],
)
async def test_retention_deletes_unsent_uploads_after_the_grace_on_its_interval(user):
    alice, bob = await user(), await user()
    uploaded = time.monotonic()
    kept = await alice.upload_media(b"sent right away", "text/plain")
    dropped = await alice.upload_media(b"never sent", "text/plain")
    await alice.send_message(
        recipient_id=bob.user_id, type="file", media_id=kept["media_id"], content=""
    )
    # Sweeps every 0.3 s (the default: hourly) find it once 3.6 s old (the default: a day).
    async with asyncio.timeout(60):
        while True:
            try:
                await alice.download_media(dropped["media_id"])
            except ApiError as exc:
                assert exc.code == "not_found"
                break
            await asyncio.sleep(0.05)
    assert time.monotonic() - uploaded >= 3.6
    assert await bob.download_media(kept["media_id"]) == b"sent right away"
    with pytest.raises(ApiError) as err:
        await alice.send_message(
            recipient_id=bob.user_id, type="file", media_id=dropped["media_id"]
        )
    assert (err.value.status, err.value.code) == (404, "not_found")
