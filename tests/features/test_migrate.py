"""``chatd migrate``: a SQLite chatd moved to ScyllaDB looks and works the same.

One SQLite data directory is built per module through a real chatd app (accounts,
devices, contacts, invites, direct chats and a group with changes, ~3,300
messages across message buckets, receipts, a left member, media, keys, an
idempotency key) and copied for each test. Each test migrates into a keyspace of
its own on ``CHATD_TEST_SCYLLA``, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from chatd.app import build_app
from chatd.client import ApiError, ChatdClient
from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.models import MessageDraft, WatermarkMove
from chatd.migrate import runner
from chatd.migrate.runner import MigrateError, Options, migrate
from tests.conftest import PASSWORD, services_of, test_config
from tests.scylla_server import ScyllaServer, scylla_server

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("alice", "bob", "carol", "dave", "eve", "frank")


# -- the source: built once per module through a real chatd on SQLite -----------------------


@dataclass
class Account:
    username: str
    user_id: str
    token: str
    device_id: str


@dataclass
class World:
    accounts: dict[str, Account] = field(default_factory=dict)
    extra_tokens: dict[str, str] = field(default_factory=dict)  # label -> token
    chats: dict[str, str] = field(default_factory=dict)  # label -> chat id
    retry: dict[str, Any] = field(default_factory=dict)  # the message sent with "retry-me"
    media_id: str = ""
    replay: list[tuple[str, int, str]] = field(default_factory=list)  # bob's pending backlog


def b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


async def bulk(storage: Any, chat_id: str, senders: list[Account], count: int, tag: str) -> None:
    """``count`` messages from ``senders`` in turn, appended concurrently (group commit)."""
    drafts = [
        MessageDraft(
            chat_id=chat_id,
            sender_id=senders[i % len(senders)].user_id,
            sender_device_id=senders[i % len(senders)].device_id,
            type="text",
            content=f"{tag} {i} ✓ — ünïcode",
            client_msg_id=f"{tag}-{i}",
            reply_to=None,
        )
        for i in range(count)
    ]
    for start in range(0, count, 250):
        await asyncio.gather(*(storage.messages.append(d) for d in drafts[start : start + 250]))


async def build_world(data_dir: Path) -> World:
    world = World()
    server = TestServer(build_app(test_config(data_dir)))
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    storage = services_of(server).storage
    clients: list[ChatdClient] = []
    try:
        c: dict[str, ChatdClient] = {}
        for name in NAMES:
            client = ChatdClient(base)
            clients.append(client)
            await client.register(name, PASSWORD, display_name=name.title())
            await client.login(name, PASSWORD, device_name=f"{name}'s phone")
            c[name] = client
            world.accounts[name] = Account(name, client.user_id, client.token, client.device_id)
        a = world.accounts
        second = ChatdClient(base)
        clients.append(second)
        await second.login("alice", PASSWORD, device_name="laptop")
        world.extra_tokens["alice laptop"] = second.token
        gone = ChatdClient(base)
        clients.append(gone)
        await gone.login("carol", PASSWORD, device_name="old tablet")
        world.extra_tokens["carol revoked"] = gone.token
        await c["carol"].revoke_device(gone.device_id)
        await storage.users.update(a["frank"].user_id, banned=True, status_message="banned")
        await c["alice"].update_me(status_message="hello from sqlite")
        await c["alice"].add_contact(a["bob"].user_id, name="Bobby")
        await c["carol"].add_contact(a["alice"].user_id)
        await storage.invites.create("INVITE-OPEN", 3, None)
        await storage.invites.create("INVITE-EXPIRES", 1, 4_102_444_800_000)
        await c["alice"].upload_keys(
            b64(33),
            {"key_id": 7, "public_key": b64(33), "signature": b64(64)},
            [{"key_id": i, "public_key": b64(33)} for i in range(1, 6)],
        )

        # Direct chats: alice-bob spans three message buckets (1,000 messages each).
        ab = (await c["alice"].open_direct(a["bob"].user_id))["chat_id"]
        world.chats["alice-bob"] = ab
        await bulk(storage, ab, [a["alice"], a["bob"]], 2100, "ab")
        world.retry = await c["alice"].send_message(
            chat_id=ab, content="sent once", client_msg_id="retry-me"
        )
        ac = (await c["alice"].open_direct(a["carol"].user_id))["chat_id"]
        world.chats["alice-carol"] = ac
        await bulk(storage, ac, [a["carol"], a["alice"]], 30, "ac")
        bd = (await c["bob"].open_direct(a["dave"].user_id))["chat_id"]
        world.chats["bob-dave"] = bd
        await bulk(storage, bd, [a["dave"]], 999, "bd")  # ends on a bucket's last seq
        world.chats["alice-eve"] = (await c["alice"].open_direct(a["eve"].user_id))["chat_id"]

        # A group whose changes straddle a bucket boundary: dave leaves, eve joins late.
        members = [a[n].user_id for n in ("bob", "carol", "dave")]
        group = (await c["alice"].create_group("Team", members, description="the team"))["group_id"]
        world.chats["group"] = group
        await bulk(storage, group, [a[n] for n in ("alice", "bob", "carol", "dave")], 1050, "g")
        await c["alice"].remove_member(group, a["dave"].user_id)
        await c["alice"].set_member_role(group, a["carol"].user_id, "admin")
        await c["alice"].update_group(group, name="Team 2")
        await c["carol"].add_members(group, [a["eve"].user_id])
        await bulk(storage, group, [a[n] for n in ("alice", "eve", "carol")], 100, "g2")
        media = await c["alice"].upload_media(b"shared notes\n" * 20, "text/plain")
        world.media_id = media["media_id"]
        last_group = (
            await c["alice"].send_message(
                chat_id=group, type="file", content="see file", media_id=media["media_id"]
            )
        )["seq"]
        await c["bob"].upload_media(b"never sent\n" * 10, "text/plain")  # unreferenced

        # Receipts: read and delivered watermarks, device cursors; bob's phone has
        # the last 3 messages of alice-bob still to receive.
        await c["bob"].mark_read(ab, 1500)
        last_ab = world.retry["seq"]
        await storage.receipts.advance(
            [
                WatermarkMove(ab, a["bob"].user_id, a["bob"].device_id, delivered_seq=last_ab - 3),
                WatermarkMove(bd, a["bob"].user_id, a["bob"].device_id, delivered_seq=999),
                WatermarkMove(
                    group, a["bob"].user_id, a["bob"].device_id, delivered_seq=last_group
                ),
                WatermarkMove(group, a["carol"].user_id, a["carol"].device_id, delivered_seq=900),
                WatermarkMove(group, a["eve"].user_id, None, delivered_seq=1100, read_seq=1090),
            ]
        )
        async with (
            ChatdClient(base, token=a["bob"].token) as bob,
            bob.connect(auto_delivery_receipts=False) as ws,
        ):
            got = await ws.collect("new_message", 3)
            world.replay = [
                (e["data"]["chat_id"], e["data"]["seq"], e["data"]["message_id"]) for e in got
            ]
            assert [e for e in await ws.drain() if e["type"] == "new_message"] == []
        return world
    finally:
        for client in clients:
            await client.aclose()
        await server.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    data_dir = tmp_path_factory.mktemp("migrate-source") / "data"
    world = asyncio.run(build_world(data_dir))
    return data_dir, world


@pytest.fixture
def source(template: tuple[Path, World], tmp_path: Path) -> tuple[Path, World]:
    """A copy of the source data directory for this test."""
    data_dir, world = template
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    return copy, world


@pytest.fixture
def cassandra() -> ScyllaServer:
    return scylla_server()


@pytest.fixture
def keyspace(cassandra: ScyllaServer) -> Iterator[str]:
    """A fresh keyspace name; the keyspace is dropped after the test."""
    name = f"chatd_migrate_{uuid.uuid4().hex[:10]}"
    yield name
    cassandra.execute(f"DROP KEYSPACE IF EXISTS {name}")


def target_url(cassandra: ScyllaServer, keyspace: str) -> str:
    return f"scylla://{cassandra.host}:{cassandra.port}/{keyspace}"


def options(source_dir: Path, cassandra: ScyllaServer, keyspace: str, **kw: Any) -> Options:
    return Options(
        source=source_dir,
        target=runner.parse_target(target_url(cassandra, keyspace)),
        **kw,
    )


def scylla_overrides(cassandra: ScyllaServer, keyspace: str) -> dict[str, Any]:
    where = {"contact_points": [cassandra.host], "port": cassandra.port, "keyspace": keyspace}
    return {"storage": {"backend": "scylla", "scylla": where}}


# -- what clients see ---------------------------------------------------------------------


async def call(coro: Any) -> Any:
    try:
        return await coro
    except ApiError as exc:
        return {"error": exc.code, "status": exc.status}


async def history(client: ChatdClient, chat_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await client.messages(chat_id, after_seq=after, limit=100)
        out += page["messages"]
        if page["next_cursor"] is None:
            return out
        after = page["next_cursor"]


async def snapshot(base: str, world: World) -> dict[str, Any]:
    """Everything each account sees through the REST API (nothing that writes)."""
    seen: dict[str, Any] = {}
    for name, account in world.accounts.items():
        async with ChatdClient(base, token=account.token) as c:
            view: dict[str, Any] = {
                "me": await call(c.me()),
                "devices": await call(c.devices()),
                "contacts": await call(c.contacts()),
                "chats": await call(c.chats()),
                "search a": await call(c.search_users("a")),
                "search ca": await call(c.search_users("ca")),
                "key count": await call(c.key_count()),
            }
            if isinstance(view["chats"], list):
                for chat in view["chats"]:
                    chat_id = chat["chat_id"]
                    view[f"history {chat_id}"] = await history(c, chat_id)
                    newest = await c.messages(chat_id, limit=20)
                    view[f"newest {chat_id}"] = newest
                    if newest["next_cursor"]:  # a page before an id: the message id index
                        view[f"before {chat_id}"] = await c.messages(
                            chat_id, limit=30, before=newest["next_cursor"]
                        )
                group = world.chats["group"]
                view["group"] = await call(c.get_group(group))
                view["group history"] = await call(history(c, group))
            view["user alice"] = await call(c.get_user(world.accounts["alice"].user_id))
            seen[name] = view
    for label, token in world.extra_tokens.items():
        async with ChatdClient(base, token=token) as c:
            seen[label] = {"me": await call(c.me()), "devices": await call(c.devices())}
    async with ChatdClient(base, token=world.accounts["alice"].token) as c:
        seen["media"] = await c.download_media(world.media_id)
    return seen


# -- tests ---------------------------------------------------------------------------------


async def test_a_migrated_chatd_shows_and_continues_the_same_state(
    aiohttp_server, cassandra, keyspace, source
):
    data_dir, world = source
    app = await aiohttp_server(build_app(test_config(data_dir)))
    before = await snapshot(str(app.make_url("")).rstrip("/"), world)
    await app.close()
    # The snapshot holds what it should (so comparing it means something).
    ab = world.chats["alice-bob"]
    assert len(before["alice"]["chats"]) == 4 and before["dave"]["group"]["status"] == 404
    assert len(before["bob"][f"history {ab}"]) == world.retry["seq"] == 2101
    assert {m["status"] for m in before["alice"][f"history {ab}"]} == {"read", "sent"}
    assert before["eve"]["group history"][0]["seq"] == 1055  # from her join
    assert before["alice"]["key count"] == 5 and before["media"].startswith(b"shared notes")
    assert before["carol revoked"]["me"]["status"] == 401
    assert before["frank"]["me"]["status"] in (401, 403)

    outcome = await migrate(options(data_dir, cassandra, keyspace, batch_size=150))
    assert outcome.copied
    assert outcome.report.ok, outcome.report.problems
    counts = {name: (src, dst) for name, src, dst in outcome.report.counts}
    assert counts["messages"][0] > 3300 and counts["messages"][0] == counts["messages"][1]
    assert counts["members"][0] == counts["members"][1] == 13

    scylla = await aiohttp_server(
        build_app(test_config(data_dir, scylla_overrides(cassandra, keyspace)))
    )
    base = str(scylla.make_url("")).rstrip("/")
    after = await snapshot(base, world)
    for name in before:
        assert after[name] == before[name], name

    a = world.accounts
    async with (
        ChatdClient(base, token=a["bob"].token) as bob,
        bob.connect(auto_delivery_receipts=False) as ws,
    ):  # bob's phone gets exactly the backlog it had on SQLite
        got = await ws.collect("new_message", 3)
        assert [(e["data"]["chat_id"], e["data"]["seq"], e["data"]["message_id"]) for e in got] == (
            world.replay
        )
        assert [e for e in await ws.drain() if e["type"] == "new_message"] == []

    async with (
        ChatdClient(base, token=a["alice"].token) as alice,
        ChatdClient(base, token=a["dave"].token) as dave,
        ChatdClient(base, token=a["eve"].token) as eve,
    ):
        ab, group = world.chats["alice-bob"], world.chats["group"]
        again = await alice.send_message(chat_id=ab, content="different", client_msg_id="retry-me")
        assert (again["message_id"], again["seq"]) == (
            world.retry["message_id"],
            world.retry["seq"],
        )
        fresh = await alice.send_message(chat_id=ab, content="first on scylla")
        assert fresh["seq"] == world.retry["seq"] + 1
        old_group = before["alice"]["group history"]
        last_group = old_group[-1]["seq"]
        with pytest.raises(ApiError) as removed:
            await dave.send_message(chat_id=group, content="I was removed")
        assert (removed.value.status, removed.value.code) == (404, "not_found")
        assert (await eve.send_message(chat_id=group, content="hi"))["seq"] == last_group + 1
        await alice.add_members(group, [a["dave"].user_id])  # a group change: epoch moves
        back = await dave.send_message(chat_id=group, content="back again")
        assert back["seq"] == last_group + 3
        seqs = [m["seq"] for m in await history(alice, group)]
        assert seqs == list(range(1, last_group + 4))
        ae = world.chats["alice-eve"]  # an empty direct chat gets its first seq
        assert (await alice.send_message(chat_id=ae, content="hello"))["seq"] == 1
        assert (await alice.open_direct(a["bob"].user_id))["chat_id"] == ab  # the same pair
        bd = world.chats["bob-dave"]  # seq 1000 opens bucket 1 under bucket 0's epoch
        assert (await dave.send_message(chat_id=bd, content="next bucket"))["seq"] == 1000

        # LWT paths on imported rows: usernames, prekey claims, revocation, invites, media.
        async with ChatdClient(base) as newcomer:
            with pytest.raises(ApiError) as taken:
                await newcomer.register("alice", PASSWORD)
            assert (taken.value.status, taken.value.code) == (409, "conflict")
        [bundle] = await eve.get_keys(a["alice"].user_id)
        assert bundle["one_time_prekey"] is not None and await alice.key_count() == 4
        laptop = [d for d in await alice.devices() if d["name"] == "laptop"]
        await alice.revoke_device(laptop[0]["device_id"])
        async with ChatdClient(base, token=world.extra_tokens["alice laptop"]) as gone:
            with pytest.raises(ApiError) as revoked:
                await gone.me()
            assert (revoked.value.status, revoked.value.code) == (401, "unauthorized")
    store = services_of(scylla).storage
    assert await store.invites.consume("INVITE-OPEN", 0)
    unsent = await store.media.unreferenced(now_ms() + 86_400_000, 10)
    assert [m.uploader_id for m in unsent] == [a["bob"].user_id]
    assert world.media_id not in {m.media_id for m in unsent}


async def test_an_interrupted_migration_resumes_without_doubling(
    cassandra, keyspace, source, monkeypatch
):
    from chatd.storage.scylla.importer.writer import Importer

    data_dir, _ = source
    monkeypatch.setattr(runner, "CHECKPOINT_S", 0.0)  # a checkpoint after every page
    write, pages = Importer.write, 0

    async def failing(self: Importer, puts: list[Any]) -> None:
        """The cluster goes away in the middle of the message step."""
        nonlocal pages
        if any(p.table == "messages" for p in puts):
            pages += 1
            if pages > 12:
                await asyncio.sleep(0.05)
                raise ChatdError("unavailable", "storage is unavailable")
        await write(self, puts)

    monkeypatch.setattr(Importer, "write", failing)
    with pytest.raises(ChatdError):
        await migrate(options(data_dir, cassandra, keyspace, batch_size=100))
    monkeypatch.setattr(Importer, "write", write)
    rows = cassandra.execute(f"SELECT step, position, done FROM {keyspace}.import_progress")
    progress = {r.step: (r.position, r.done) for r in rows}
    assert progress["chats"][1] and not progress["messages"][1] and progress["messages"][0]
    assert "cursors" not in progress

    # A resumed run refuses a source that changed since (same write times, other values).
    with sqlite3.connect(data_dir / "chatd.sqlite3") as db:
        db.execute("UPDATE users SET display_name = 'Changed' WHERE username = 'carol'")
    with pytest.raises(MigrateError, match="source changed"):
        await migrate(options(data_dir, cassandra, keyspace))
    with sqlite3.connect(data_dir / "chatd.sqlite3") as db:
        db.execute("UPDATE users SET display_name = 'Carol' WHERE username = 'carol'")

    outcome = await migrate(options(data_dir, cassandra, keyspace, batch_size=100))
    assert outcome.copied and outcome.report.ok, outcome.report.problems

    again = await migrate(options(data_dir, cassandra, keyspace))
    assert not again.copied and again.report.ok  # complete: verified again, nothing copied


def cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatd", "migrate", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


async def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return proc.returncode, out + err


async def test_a_killed_cli_run_resumes_and_verification_catches_tampering(
    cassandra, keyspace, source
):
    data_dir, world = source
    url = target_url(cassandra, keyspace)
    args = ["--from", f"sqlite:{data_dir}", "--to", url, "--batch-size", "5"]
    proc = cli(*args, "--concurrency", "1")
    deadline, steps = time.monotonic() + 120, {}
    while time.monotonic() < deadline and proc.poll() is None:  # kill it in the messages
        await asyncio.sleep(0.05)
        # Once the step before chats is done, it is frozen while its progress is read,
        # so the kill lands in the state that was seen (the messages take seconds).
        freeze = bool(steps.get("prekeys"))
        if freeze:
            proc.send_signal(signal.SIGSTOP)
        with contextlib.suppress(Exception):  # the table may not exist yet
            rows = cassandra.execute(f"SELECT step, done FROM {keyspace}.import_progress")
            steps = {r.step: r.done for r in rows}
        if freeze and steps.get("chats"):
            break
        if freeze:
            proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert steps.get("chats") and not steps.get("messages"), (steps, err[-2000:])
    rows = cassandra.execute(f"SELECT step, done FROM {keyspace}.import_progress")
    assert not {r.step: r.done for r in rows}.get("messages"), "finished before the kill"

    code, output = await finish(cli(*args))
    assert code == 0, output
    assert "resuming" in output and "verified" in output

    # Tamper with one message and one idempotency key: verification names the chat.
    group = world.chats["group"]
    cassandra.execute(
        f"UPDATE {keyspace}.messages SET content = 'tampered' "
        "WHERE chat_id = %s AND bucket = 1 AND seq = 1010",
        (group,),
    )
    ab = world.chats["alice-bob"]
    cassandra.execute(
        f"DELETE FROM {keyspace}.msg_keys WHERE sender_id = %s AND client_msg_id = 'retry-me'",
        (world.accounts["alice"].user_id,),
    )
    code, output = await finish(cli(*args, "--verify-only"))
    assert code == 1, output
    assert f"chat {group}: messages differ" in output and "seq 1010" in output
    assert f"chat {ab}: table msg_keys" in output
    assert "verification FAILED" in output


async def test_the_cli_refuses_a_source_in_use_and_bad_arguments(source, tmp_path):
    data_dir, _ = source
    with open(data_dir / "serve.lock", "w") as held:  # what a running chatd serve holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, output = await finish(
            cli("--from", f"sqlite:{data_dir}", "--to", "scylla://127.0.0.1:1/ks")
        )
    assert code == 1 and "stop it first" in output
    code, output = await finish(cli("--from", f"{data_dir}", "--to", "scylla://h/ks"))
    assert code == 2 and "sqlite:PATH" in output
    code, output = await finish(cli("--from", f"sqlite:{data_dir}", "--to", "scylla://h"))
    assert code == 2 and "keyspace" in output
    code, output = await finish(
        cli("--from", f"sqlite:{tmp_path / 'nowhere'}", "--to", "scylla://h/ks")
    )
    assert code == 1 and "no such database" in output


async def test_the_cli_takes_credentials_from_the_scylla_table_of_the_config(source, tmp_path):
    from chatd.cli import _scylla_settings
    from chatd.config import load

    data_dir, _ = source
    config = tmp_path / "chatd.toml"
    config.write_text('[storage.scylla]\nusername = "chatd"\nconsistency = "SOMETIMES"\n')
    code, output = await finish(
        cli("--from", f"sqlite:{data_dir}", "--to", "scylla://h/ks", "--config", str(config))
    )
    assert code == 2 and "[storage.scylla] consistency must be a CQL consistency" in output

    config.write_text('[storage.scylla]\nusername = "chatd"\nlocal_dc = "dc2"\n')
    settings = _scylla_settings(load(config))
    assert (settings["username"], settings["local_dc"], settings["port"]) == ("chatd", "dc2", 9042)


async def test_a_keyspace_chatd_already_uses_is_refused(cassandra, keyspace, source):
    from chatd.core.ids import new_id
    from chatd.core.models import User
    from chatd.storage.scylla import ScyllaStorage

    data_dir, _ = source
    store = ScyllaStorage(None, **runner.parse_target(target_url(cassandra, keyspace)))
    await store.open()
    await store.users.create(User(new_id(), "native", "Native", "hash", 1))
    await store.aclose()
    with pytest.raises(MigrateError, match="already holds chatd data"):
        await migrate(options(data_dir, cassandra, keyspace))


def test_parse_target():
    assert runner.parse_target("scylla://a,b:9043/ks") == {
        "contact_points": ["a", "b"],
        "keyspace": "ks",
        "port": 9043,
    }
    assert runner.parse_target("scylla://10.0.0.1/chatd") == {
        "contact_points": ["10.0.0.1"],
        "keyspace": "chatd",
    }
    for bad in ("scylla://a:1,b:2/ks", "scylla://a/chat-d", "postgres://a/ks", "scylla:///ks"):
        with pytest.raises(MigrateError):
            runner.parse_target(bad)
    assert runner.parse_source("sqlite:/var/lib/chatd") == Path("/var/lib/chatd")


def test_epochs_follow_the_system_messages():
    steps = pytest.importorskip("chatd.migrate.steps")
    facts = steps.ChatEpochs(version=5, system=[1, 1052, 1053, 1054, 1055])
    assert facts.of(0) == (1, 1)
    assert facts.of(1) == (5, 1055)
    assert facts.of(2) == (5, 1055)
    assert steps.ChatEpochs(0, []).of(3) == (0, 0)


async def test_the_importer_knows_every_table_and_column(cassandra, keyspace):
    """A table or column added to the ScyllaDB schema must be handled by the importer
    (or listed as not imported), or migrations would silently leave it empty."""
    from chatd.storage.scylla import ScyllaStorage
    from chatd.storage.scylla.importer.tables import NOT_IMPORTED, TABLES

    store = ScyllaStorage(None, **runner.parse_target(target_url(cassandra, keyspace)))
    await store.open()
    await store.aclose()
    rows = cassandra.execute(
        "SELECT table_name, column_name, kind FROM system_schema.columns WHERE keyspace_name = %s",
        (keyspace,),
    )
    live: dict[str, dict[str, set[str]]] = {}
    for r in rows:
        live.setdefault(r.table_name, {}).setdefault(r.kind, set()).add(r.column_name)
    assert set(live) - set(NOT_IMPORTED) == set(TABLES)
    for name, spec in TABLES.items():
        kinds = live[name]
        assert kinds.get("partition_key", set()) == set(spec.partition), name
        assert kinds.get("clustering", set()) == set(spec.clustering), name
        assert kinds.get("static", set()) == set(spec.statics), name
        assert kinds.get("regular", set()) == set(spec.regular), name


async def test_the_source_reader_knows_every_sqlite_table(tmp_path):
    """Likewise for the SQLite schema: a new table must be copied or listed as not copied."""
    from chatd.migrate.source import TABLES
    from chatd.storage.sqlite import SqliteStorage

    store = SqliteStorage(tmp_path)
    await store.open()
    await store.aclose()
    with sqlite3.connect(tmp_path / "chatd.sqlite3") as conn:
        names = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        }
    assert names == set(TABLES)
