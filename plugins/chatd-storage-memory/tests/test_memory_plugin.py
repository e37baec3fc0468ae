"""The plugin as chatd uses it: found by name, settings checked, a real server on it.

The storage contract itself is the conformance kit's job (see README.md).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from chatd.app import build_app
from chatd.client import ApiError, ChatdClient
from chatd.config import ConfigError, from_dict
from chatd.plugins import installed

FAST_AUTH = {"argon2_time_cost": 1, "argon2_memory_kib": 256, "argon2_parallelism": 1}


def config(data_dir: Path, memory: dict[str, Any]) -> Any:
    return from_dict(
        {
            "server": {"data_dir": str(data_dir)},
            "auth": FAST_AUTH,
            "storage": {"backend": "memory", "memory": memory},
        }
    )


def test_the_entry_point_is_installed():
    assert "memory" in installed("chatd.storage")


def test_a_misspelt_setting_stops_chatd_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"\[storage\.memory\] nmae: unknown key"):
        build_app(config(tmp_path, {"nmae": "demo"}))

    toml = tmp_path / "chatd.toml"
    toml.write_text('[storage]\nbackend = "memory"\n[storage.memory]\nname = 7\n')
    served = subprocess.run(
        [sys.executable, "-m", "chatd", "serve", "--config", str(toml), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 2
    assert "configuration error: [storage.memory] name must be a string" in served.stderr


@contextlib.asynccontextmanager
async def served(cfg: Any) -> AsyncIterator[ChatdClient]:
    """A client of a chatd app on ``cfg``, served for the block."""
    async with (
        TestServer(build_app(cfg)) as server,
        ChatdClient(str(server.make_url("")).rstrip("/")) as client,
    ):
        yield client


async def chat(url: str) -> tuple[str, list[str]]:
    """Alice writes to Bob twice; Bob's view of their chat: its id and the contents."""
    async with ChatdClient(url) as alice, ChatdClient(url) as bob:
        for client, name in ((alice, "alice"), (bob, "bob")):
            await client.register(name, "a long password")
            await client.login(name, "a long password")
        for text in ("hello", "still there?"):
            await alice.send_message(recipient_id=bob.user_id, content=text)
        (listed,) = await bob.chats()
        page = await bob.messages(listed["chat_id"], after_seq=0)
        return listed["chat_id"], [m["content"] for m in page["messages"]]


async def test_chatd_serves_on_it_and_apps_sharing_a_name_share_the_data(tmp_path):
    async with TestServer(build_app(config(tmp_path / "one", {"name": "demo"}))) as one:
        chat_id, contents = await chat(str(one.make_url("")).rstrip("/"))
    assert contents == ["hello", "still there?"]

    # A second app in this process on the same name: the data is still there.
    async with served(config(tmp_path / "two", {"name": "demo"})) as bob:
        await bob.login("bob", "a long password")
        page = await bob.messages(chat_id, after_seq=0)
    assert [m["content"] for m in page["messages"]] == contents

    # Another name is another, empty store.
    async with served(config(tmp_path / "three", {"name": "other"})) as bob:
        with pytest.raises(ApiError) as refused:
            await bob.login("bob", "a long password")
        assert refused.value.code == "unauthorized"
