"""ScyllaDB only: what happens when a process dies midway, and the schema itself.

Failures (a process dying between two steps) are staged with raw CQL or by
switching off a step on one node.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from chatd.core.errors import ChatdError, StaleVersion
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, GroupChange, Member
from tests.scylla_server import scylla_server

from .conftest import needs_scylla
from .scylla_nodes import cql, direct, draft, group, nodes, system, users

pytest.importorskip("cassandra", reason="scylla-driver is not installed")

__all__ = ["nodes"]  # a fixture


async def test_a_retry_completes_a_key_whose_owner_died_before_numbering(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    await cql(
        "INSERT INTO {ks}.msg_keys (sender_id, client_msg_id, owner, chat_id, claimed_at) "
        "VALUES (%s, 'c1', 'dead-node', %s, %s)",
        (a.user_id, chat.chat_id, now_ms() - 60_000),
    )
    first = await nodes[1].messages.append(draft(chat.chat_id, a, "c1"))
    assert first.created and first.message.seq == 1
    again = await nodes[2].messages.append(draft(chat.chat_id, a, "c1"))
    assert again.created is False and again.message == first.message


async def test_a_retry_finds_the_message_of_an_owner_that_died_after_numbering(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    stored = (await nodes[0].messages.append(draft(chat.chat_id, a, "c1"))).message
    await cql(  # as if the owner died right after its claim: no seq on the key
        "UPDATE {ks}.msg_keys SET seq = null, claimed_at = %s "
        "WHERE sender_id = %s AND client_msg_id = 'c1'",
        (now_ms() - 60_000, a.user_id),
    )
    retry = await nodes[1].messages.append(draft(chat.chat_id, a, "c1"))
    assert retry.created is False and retry.message == stored
    assert [m.seq for m in await nodes[1].messages.after(chat.chat_id, 0, 10)] == [1]


async def test_a_retry_repairs_what_an_owner_that_died_before_its_follow_up_writes_left(
    nodes, monkeypatch
):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    await nodes[0].messages.append(draft(chat.chat_id, a, "c1"))

    async def dies(*args: object) -> None:  # the message is stored, then nothing more
        pass

    monkeypatch.setattr(nodes[0].messages, "_finish", dies)
    pending = asyncio.ensure_future(nodes[0].messages.append(draft(chat.chat_id, a, "c2")))
    while await nodes[1].messages.at_seq(chat.chat_id, 2) is None:
        await asyncio.sleep(0.05)
    pending.cancel()
    await cql(  # the owner's lease is over
        "UPDATE {ks}.msg_keys SET claimed_at = %s WHERE sender_id = %s AND client_msg_id = 'c2'",
        (now_ms() - 60_000, a.user_id),
    )
    assert (await nodes[1].chats.get(chat.chat_id)).last_seq == 1
    retry = await nodes[1].messages.append(draft(chat.chat_id, a, "c2"))
    assert retry.created is False and retry.message.seq == 2
    # History is bounded by the chat's last_seq: the retry raised it to the message.
    assert (await nodes[2].chats.get(chat.chat_id)).last_seq == 2


async def test_a_committed_change_is_finished_by_the_next_send(nodes, monkeypatch):
    admin, bob = await users(nodes[0], 2)
    chat = await group(nodes[0], admin, bob)
    await nodes[1].messages.append(draft(chat.chat_id, bob))

    async def dies(*_: object) -> None:  # node 0 dies between commit and apply
        return None

    monkeypatch.setattr(nodes[0].chats._groups, "roll_forward", dies)
    monkeypatch.setattr(nodes[0].messages.sequencer, "_roll_forward", dies)
    removal = await nodes[0].chats.change_group(
        GroupChange(chat.chat_id, 1, system(chat.chat_id, admin), remove=(bob.user_id,))
    )
    assert (await nodes[2].chats.get(chat.chat_id)).version == 1  # not applied yet

    with pytest.raises(ChatdError) as info:
        await nodes[1].messages.append(draft(chat.chat_id, bob))
    assert info.value.code == "not_found"
    assert (await nodes[2].chats.get(chat.chat_id)).version == 2
    assert (await nodes[2].chats.member(chat.chat_id, bob.user_id)).left_seq == removal.seq
    with pytest.raises(StaleVersion):  # and a change computed from the old version loses
        await nodes[2].chats.change_group(
            GroupChange(chat.chat_id, 1, system(chat.chat_id, admin), roles=())
        )


async def test_a_committed_creation_is_finished_by_a_reader(nodes, monkeypatch):
    admin, bob = await users(nodes[0], 2)

    async def dies(*_: object) -> None:
        return None

    monkeypatch.setattr(nodes[0].chats._groups, "roll_forward", dies)
    now = now_ms()
    chat = Chat(new_id(), "group", now, title="t", created_by=admin.user_id)
    members = [Member(chat.chat_id, admin.user_id, "admin", now)]
    members.append(Member(chat.chat_id, bob.user_id, "member", now))
    first = await nodes[0].chats.create_group(chat, members, system(chat.chat_id, admin))

    found = await nodes[1].chats.get(chat.chat_id)
    assert (found.title, found.version, found.last_seq) == ("t", 1, 1)
    assert [m.chat_id for m in await nodes[1].chats.memberships(bob.user_id)] == [chat.chat_id]
    assert await nodes[1].messages.at_seq(chat.chat_id, 1) == first


async def test_fresh_keyspace_opened_by_several_nodes_at_once(request, tmp_path):
    needs_scylla(request)
    from chatd.storage.scylla import ScyllaStorage
    from chatd.storage.scylla.migrations import MIGRATIONS

    server = scylla_server()
    keyspace = f"{server.keyspace}_fresh"
    options = {**server.options(), "keyspace": keyspace}
    stores = [ScyllaStorage(tmp_path, **options) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        rows = await cql(f"SELECT version FROM {keyspace}.schema_migrations")
        assert sorted(r.version for r in rows) == sorted(v for v, _, _ in MIGRATIONS)
        await stores[0].invites.create("x", 1, None)
        assert await stores[2].invites.consume("x", now_ms())
    finally:
        for s in stores:
            await s.aclose()
        await cql(f"DROP KEYSPACE IF EXISTS {keyspace}")


def documented_schema() -> dict[str, dict[str, tuple[str, str]]]:
    """Tables in schema.cql: column -> (type, kind) with kind as system_schema names it."""
    from pathlib import Path

    import chatd.storage.scylla as package

    text = (Path(package.__file__).parent / "schema.cql").read_text()
    text = "\n".join(line.split("--")[0].rstrip() for line in text.splitlines())
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\);", text, re.S):
        columns: dict[str, tuple[str, str]] = {}
        key = ""
        for part in (p.strip() for p in body.split(",\n")):
            if part.startswith("PRIMARY KEY"):
                key = part[part.index("(") + 1 : part.rindex(")")]
                continue
            words = part.split()
            kind = "static" if "static" in words else "regular"
            columns[words[0]] = (words[1], kind)
            if "PRIMARY" in words:
                key = words[0]
        partition, _, clustering = key.partition(")") if key.startswith("(") else ("", "", "")
        if key.startswith("("):
            parts = [c.strip() for c in partition.strip("(").split(",")]
            rest = [c.strip() for c in clustering.split(",") if c.strip()]
        else:
            parts, rest = [key.split(",")[0].strip()], [c.strip() for c in key.split(",")[1:]]
        for c in parts:
            columns[c] = (columns[c][0], "partition_key")
        for c in rest:
            columns[c] = (columns[c][0], "clustering")
        tables[name] = columns
    return tables


async def test_schema_cql_documents_the_migrated_schema(nodes):
    rows = await cql(
        "SELECT table_name, column_name, type, kind FROM system_schema.columns "
        "WHERE keyspace_name = %s",
        (scylla_server().keyspace,),
    )
    live: dict[str, dict[str, tuple[str, str]]] = {}
    for r in rows:
        live.setdefault(r.table_name, {})[r.column_name] = (r.type, r.kind)
    assert documented_schema() == live


async def test_a_migration_cut_short_after_adding_a_column_runs_again(nodes, tmp_path):
    """A starter that died after ``ALTER TABLE ... ADD`` but before recording the
    migration: the next one finds the column there and finishes the migration."""
    from chatd.storage.scylla import ScyllaStorage
    from chatd.storage.scylla.migrations import MIGRATIONS, AddColumn

    server = scylla_server()
    version = max(v for v, _, steps in MIGRATIONS if any(isinstance(s, AddColumn) for s in steps))
    await cql(f"DELETE FROM {server.keyspace}.schema_migrations WHERE version = {version}")
    again = ScyllaStorage(tmp_path / "again", **server.options())
    await again.open()
    try:
        rows = await cql(f"SELECT version FROM {server.keyspace}.schema_migrations")
        assert version in {r.version for r in rows}
    finally:
        await again.aclose()
