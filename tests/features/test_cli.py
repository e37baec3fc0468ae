"""The chatd command: users, invites, version, and configuration errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatd import __version__
from chatd.cli import app
from chatd.client import ApiError, ChatdClient
from tests.conftest import base_config
from tests.toml_writer import write_toml

runner = CliRunner()


def fast_config(tmp_path: Path, overrides: dict[str, Any] | None = None) -> str:
    """A configuration file with cheap password hashing and ``tmp_path / "data"``."""
    return str(write_toml(tmp_path / "chatd.toml", base_config(tmp_path / "data", overrides)))


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_every_command_has_useful_help():
    for args in (
        ["--help"],
        ["serve", "--help"],
        ["user", "--help"],
        ["user", "add", "--help"],
        ["user", "list", "--help"],
        ["user", "passwd", "--help"],
        ["user", "ban", "--help"],
        ["user", "unban", "--help"],
        ["user", "admin", "--help"],
        ["invite", "create", "--help"],
        ["group", "list", "--help"],
        ["group", "show", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_user_add_list_passwd(tmp_path):
    config = fast_config(tmp_path)
    result = runner.invoke(
        app,
        ["user", "add", "Root", "--admin", "--password-stdin", "--config", config],
        input="first password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created user root" in result.output
    zed = runner.invoke(
        app,
        ["user", "add", "zed", "--password-stdin", "--config", config],
        input="other password\n",
    )
    assert zed.exit_code == 0 and "created user zed" in zed.output
    assert "as admin" not in zed.output
    listed = runner.invoke(app, ["user", "list", "--config", config])
    lines = listed.output.splitlines()
    assert lines[1].startswith("root") and "admin" in lines[1]
    assert lines[2].startswith("zed")
    again = runner.invoke(
        app, ["user", "add", "root", "--password-stdin", "--config", config], input="whatever pw\n"
    )
    assert again.exit_code == 1 and "taken" in again.output
    changed = runner.invoke(
        app,
        ["user", "passwd", "root", "--password-stdin", "--config", config],
        input="second password\n",
    )
    assert changed.exit_code == 0
    assert changed.output.strip() == "password of root changed; its devices are logged out"
    missing = runner.invoke(app, ["user", "ban", "nobody", "--config", config])
    assert missing.exit_code == 1 and "nobody" in missing.output


def test_user_add_prompts_for_password(tmp_path):
    config = fast_config(tmp_path)
    result = runner.invoke(
        app,
        ["user", "add", "prompted", "--config", config],
        input="typed password\ntyped password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created user prompted" in result.output


async def test_passwd_and_created_users_can_log_in(tmp_path, aiohttp_server):
    from chatd.app import build_app
    from chatd.config import load

    config = fast_config(tmp_path)
    for args, password, said in (
        (["add", "carol"], "carols password", "created user carol"),
        (["passwd", "carol"], "new carol password", "password of carol changed"),
    ):
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["user", *args, "--password-stdin", "--config", config],
            input=password + "\n",
        )
        assert result.exit_code == 0, result.output
        assert said in result.output
    server = await aiohttp_server(build_app(load(Path(config))))
    async with ChatdClient(str(server.make_url("")).rstrip("/")) as client:
        await client.login("carol", "new carol password")
        with pytest.raises(ApiError) as err:
            await client.login("carol", "carols password")
        assert (err.value.status, err.value.code) == (401, "unauthorized")


async def test_cli_changes_are_audited_as_cli_and_seen_by_the_admin_api(tmp_path, aiohttp_server):
    from chatd.app import build_app
    from chatd.config import load

    config = fast_config(tmp_path)

    async def chatd(*args: str, password: str = "") -> str:
        result = await asyncio.to_thread(
            runner.invoke, app, [*args, "--config", config], input=password + "\n"
        )
        assert result.exit_code == 0, result.output
        return result.output

    await chatd("user", "add", "root", "--password-stdin", password="root password")
    await chatd("user", "add", "zed", "--password-stdin", password="zeds password")
    assert "root is now an admin" in await chatd("user", "admin", "root")
    await chatd("user", "ban", "zed")
    server = await aiohttp_server(build_app(load(Path(config))))
    async with ChatdClient(str(server.make_url("")).rstrip("/")) as root:
        await root.login("root", "root password")
        (zed,) = (await root.request("GET", "/admin/users", params={"q": "zed"}))["users"]
        assert zed["banned"] is True
        entries = (await root.request("GET", "/admin/audit"))["entries"]
        assert [(e["actor_id"], e["action"]) for e in entries] == [
            ("cli", "user.ban"),
            ("cli", "user.admin"),
            ("cli", "user.create"),
            ("cli", "user.create"),
        ]
        assert entries[0]["target_id"] == zed["user_id"]


def test_invite_create_prints_a_code(tmp_path):
    result = runner.invoke(
        app, ["invite", "create", "--uses", "2", "--config", fast_config(tmp_path)]
    )
    assert result.exit_code == 0 and len(result.output.strip()) >= 16


def test_unknown_config_key_stops_startup_naming_it(tmp_path):
    config = fast_config(tmp_path, {"limits": {"max_mesage_bytes": 10}})
    result = subprocess.run(
        [sys.executable, "-m", "chatd", "serve", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "[limits] max_mesage_bytes: unknown key" in result.stderr


def test_ill_typed_config_value_stops_startup_naming_it(tmp_path):
    config = fast_config(tmp_path, {"limits": {"messages_per_second": "fast"}})
    result = runner.invoke(app, ["serve", "--config", config])
    assert result.exit_code == 2
    assert "[limits] messages_per_second must be a number" in result.output


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.sqlite_only  # the command works on the data dir
async def test_group_list_and_show(user, services):
    alice, bob = await user(), await user()
    group = await alice.request(
        "POST", "/groups", json={"name": "Book club", "member_ids": [bob.user_id]}
    )
    data_dir = str(services.storage.db.path.parent)
    listed = await asyncio.to_thread(runner.invoke, app, ["group", "list", "--data-dir", data_dir])
    assert listed.exit_code == 0, listed.output
    assert group["group_id"] in listed.output and "Book club" in listed.output
    shown = await asyncio.to_thread(
        runner.invoke, app, ["group", "show", group["group_id"], "--data-dir", data_dir]
    )
    assert shown.exit_code == 0, shown.output
    assert "Book club" in shown.output and f"{alice.user_id:<36} admin" in shown.output
    assert "2 of at most 256" in shown.output
    missing = await asyncio.to_thread(
        runner.invoke, app, ["group", "show", "nope", "--data-dir", data_dir]
    )
    assert missing.exit_code == 1 and "not found" in missing.output


def test_serve_refuses_a_data_dir_already_served_and_a_busy_port(tmp_path):
    from tests.subprocess_server import ServerProcess

    server = ServerProcess(tmp_path / "data")
    asyncio.run(server.start())
    try:
        same_dir = subprocess.run(
            [sys.executable, "-m", "chatd", "serve", "--config", str(server.config), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert same_dir.returncode == 1 and "already using" in same_dir.stderr
        (tmp_path / "other").mkdir()
        other = fast_config(tmp_path / "other")
        busy = subprocess.run(
            [sys.executable, "-m", "chatd", "serve", "--config", other, "--port", str(server.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{server.port}" in busy.stderr
        assert "Traceback" not in busy.stderr
    finally:
        server.stop()
