"""The ScyllaDB (and Apache Cassandra) store, for several chatd nodes sharing one cluster.

Design and per-call costs: docs/architecture.md, "ScyllaDB storage"; the schema:
schema.cql. Needs the ``scylla`` extra (``pip install chatd[scylla]``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.io.libevreactor import LibevConnection
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from chatd.core.errors import ChatdError
from chatd.plugins import PluginContext
from chatd.storage.scylla import (
    audit,
    chats,
    contacts,
    devices,
    e2e,
    feed,
    groups,
    invites,
    keys,
    marks,
    media,
    messages,
    push,
    receipts,
    sequencer,
    stats,
    users,
)
from chatd.storage.scylla.bridge import Cql, Observer, unavailable
from chatd.storage.scylla.migrations import Migrator, replication_cql
from chatd.storage.scylla.settings import ScyllaSettings

log = logging.getLogger("chatd.storage.scylla")

STATEMENTS: dict[str, str] = {
    **users.CQL,
    **devices.CQL,
    **feed.CQL,
    **contacts.CQL,
    **invites.CQL,
    **keys.CQL,
    **e2e.CQL,
    **chats.CQL,
    **groups.CQL,
    **sequencer.CQL,
    **messages.CQL,
    **media.CQL,
    **marks.CQL,
    **receipts.CQL,
    **push.CQL,
    **audit.CQL,
    **stats.CQL,
}


def _level(name: str) -> int:
    try:
        return int(ConsistencyLevel.name_to_value[name.upper()])
    except KeyError:
        raise ValueError(f"unknown consistency level {name!r}") from None


class ScyllaStorage:
    """``Storage`` on a ScyllaDB / Cassandra keyspace (``data_dir`` is not used)."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        contact_points: list[str] | None = None,
        port: int = 9042,
        keyspace: str = "chatd",
        local_dc: str | None = None,
        replication: dict[str, Any] | str | None = None,
        username: str = "",
        password: str = "",
        consistency: str = "LOCAL_QUORUM",
        serial_consistency: str = "LOCAL_SERIAL",
        request_timeout: float = 10.0,
        max_in_flight: int = 512,
        observe: Observer | None = None,
    ) -> None:
        self._contact_points = list(contact_points or ["127.0.0.1"])
        self._port = port
        self._keyspace = keyspace
        self._local_dc = local_dc or None
        self._replication = replication_cql(
            replication or {"class": "SimpleStrategy", "replication_factor": 1}
        )
        self._auth = PlainTextAuthProvider(username, password) if username else None
        self._consistency = _level(consistency)
        self._serial = _level(serial_consistency)
        self._timeout = request_timeout
        self._cluster: Cluster | None = None
        # The stores exist from the start (as the port's attributes); until open()
        # gives the bridge a session, every call fails with ``unavailable``.
        self._cql = Cql(None, observe=observe, serial=self._serial, max_in_flight=max_in_flight)
        self._wire(self._cql)

    async def open(self) -> None:
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(self._local_dc)),
            consistency_level=self._consistency,
            serial_consistency_level=self._serial,
            request_timeout=self._timeout,
        )
        cluster = Cluster(
            self._contact_points,
            port=self._port,
            connection_class=LibevConnection,
            auth_provider=self._auth,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:
            await asyncio.to_thread(cluster.shutdown)
            raise unavailable(exc) from exc
        self._cluster = cluster
        cql = self._cql
        cql.session = session
        try:
            await Migrator(cql, cluster, self._keyspace, self._replication).run()
            await asyncio.to_thread(session.set_keyspace, self._keyspace)
            await asyncio.to_thread(cql.prepare_all, STATEMENTS)
            await self.keys.fill_sets()
        except Exception as exc:
            await self._shutdown()
            raise exc if isinstance(exc, ChatdError) else unavailable(exc) from exc
        cql.gate.accepting = True

    def _wire(self, cql: Cql) -> None:
        cursors = marks.CursorCache(cql)
        self.users = users.ScyllaUsers(cql)
        self.devices = devices.ScyllaDevices(cql, feed.RevocationFeed(cql))
        self.contacts = contacts.ScyllaContacts(cql)
        self.invites = invites.ScyllaInvites(cql)
        self.push = push.ScyllaPush(cql)
        self.audit = audit.ScyllaAudit(cql)
        self.stats = stats.ScyllaStats(cql)
        device_sets = e2e.DeviceSets(cql)
        self.keys = keys.ScyllaKeys(cql, device_sets)
        self.devices.forget = self.keys.forget
        self.ciphertexts = e2e.ScyllaCiphertexts(cql)
        group_store = groups.ScyllaGroups(cql)
        self.chats = chats.ScyllaChats(cql, group_store)
        self.messages = messages.ScyllaMessages(cql, cursors)
        self.media = media.ScyllaMedia(cql)
        self.messages.media = self.media
        self.messages.coverage = e2e.Coverage(cql, device_sets)
        self.messages.ciphertexts = self.ciphertexts
        self.receipts = receipts.ScyllaReceipts(cql, cursors)
        seq = sequencer.Sequencer(
            cql,
            numbered=self.messages.numbered,
            rejected=self.messages.rejected,
            roll_forward=group_store.roll_forward,
        )
        self.messages.sequencer = seq
        group_store.sequencer = seq

    @property
    def cql(self) -> Cql:
        """The bridge to this store's session (prepared statements, in-flight limit,
        consistency), for tools that write the keyspace in bulk (``chatd migrate``)."""
        return self._cql

    @property
    def keyspace(self) -> str:
        return self._keyspace

    async def aclose(self) -> None:
        await self._cql.gate.close()
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._cql.closed = True
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def ping(self) -> bool:
        if self._cql.session is None or self._cql.closed:
            return False
        try:
            await self._cql.run("SELECT release_version FROM system.local")
            return True
        except Exception:
            return False


def create(settings: Mapping[str, Any], context: PluginContext) -> ScyllaStorage:
    """The ``chatd.storage`` entry point ``scylla``: a store on the configured keyspace."""
    checked = ScyllaSettings.read(settings, context)
    return ScyllaStorage(context.data_dir, **dataclasses.asdict(checked), observe=context.observe)
