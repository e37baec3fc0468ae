"""Composition root: config -> plugins -> ports -> services -> gateway.

The only module that knows every concrete class. Everything it opens is closed
in reverse order by one AsyncExitStack when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import web

from chatd import __version__, plugins
from chatd.config import Config
from chatd.core.ids import new_id
from chatd.core.ports.storage import Storage
from chatd.core.services.accounts import AccountService
from chatd.core.services.chats import ChatService
from chatd.core.services.contacts import ContactService
from chatd.core.services.groups import GroupService
from chatd.core.services.keys import KeyService
from chatd.core.services.media import MediaService
from chatd.core.services.messages import MessageService
from chatd.core.services.presence import PresenceService
from chatd.core.services.receipts import ReceiptService
from chatd.core.services.sync import SyncService
from chatd.gateway.context import SERVICES, Services
from chatd.gateway.errors import make_error_middleware
from chatd.gateway.routes import ROUTES
from chatd.gateway.sessions import SessionRegistry
from chatd.media.processor import PoolProcessor
from chatd.metrics import Metrics
from chatd.security.argon2 import Argon2Hasher
from chatd.testing import faults

log = logging.getLogger(__name__)


def make_storage(config: Config, metrics: Metrics | None = None) -> Storage:
    """The configured storage backend, found through its entry point."""
    factory = plugins.load(plugins.STORAGE, config.storage.backend)
    # A built-in backend gets its own section ([storage.sqlite], [storage.scylla]).
    section = getattr(config.storage, config.storage.backend, None)
    options: dict[str, Any] = dataclasses.asdict(section) if section is not None else {}
    if config.storage.backend == "sqlite":
        options["synchronous"] = config.storage.sqlite.synchronous.upper()
    if metrics is not None:
        options["observe"] = metrics.observe_storage
    return factory(config.data_path, **options)


def make_accounts(config: Config, storage: Storage, sink: Any) -> AccountService:
    auth, limits = config.auth, config.limits
    hasher = Argon2Hasher(
        time_cost=auth.argon2_time_cost,
        memory_kib=auth.argon2_memory_kib,
        parallelism=auth.argon2_parallelism,
    )
    return AccountService(
        storage,
        hasher,
        sink,
        registration=auth.registration,  # type: ignore[arg-type]
        token_ttl_days=auth.token_ttl_days,
        login_attempts_per_minute=limits.login_attempts_per_minute,
        min_password_length=auth.min_password_length,
    )


def make_media(config: Config, storage: Storage, metrics: Metrics) -> MediaService:
    """The media service over the configured blob store (an entry point) and a process pool."""
    media = config.media
    blobs = plugins.load(plugins.MEDIA, media.store)(config.data_path)
    processor = PoolProcessor(
        workers=media.workers,
        thumbnail_format=media.thumbnail_format,
        observe=metrics.observe_media,
    )
    return MediaService(
        storage,
        blobs,
        processor,
        max_upload_bytes=config.limits.max_upload_bytes,
        allowed_types=media.allowed_types,
        retention_grace_ms=int(media.retention_grace_hours * 3_600_000),
        retention_interval_s=media.retention_interval_minutes * 60,
    )


def node_id_for(config: Config) -> str:
    """The configured node id, or one made once and kept in the data directory."""
    if config.server.node_id:
        return config.server.node_id
    path = Path(config.data_path) / "node_id"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    node_id = "node-" + new_id()[-12:]
    path.write_text(node_id + "\n")
    return node_id


def build_app(config: Config) -> web.Application:
    metrics = Metrics()
    storage = make_storage(config, metrics)
    sessions = SessionRegistry()
    sink = faults.sink(sessions)  # the registry itself unless a test fault is switched on
    chats = ChatService(storage)
    receipts = ReceiptService(storage, chats, sink)
    media = make_media(config, storage, metrics)
    services = Services(
        storage=storage,
        accounts=make_accounts(config, storage, sink),
        contacts=ContactService(storage),
        chats=chats,
        groups=GroupService(storage, chats, sink, max_members=config.limits.max_group_members),
        messages=MessageService(
            storage,
            chats,
            sink,
            receipts,
            media,
            max_message_bytes=config.limits.max_message_bytes,
            messages_per_second=config.limits.messages_per_second,
        ),
        receipts=receipts,
        presence=PresenceService(storage, chats, sink, typing_ttl=config.presence.typing_timeout_s),
        sync=SyncService(storage),
        media=media,
        keys=KeyService(storage, fetches_per_minute=config.limits.key_fetches_per_minute),
        sessions=sessions,
        metrics=metrics,
        node_id=node_id_for(config),
        version=__version__,
        heartbeat_s=config.server.heartbeat_s,
        allowed_origins=list(config.server.allowed_origins),
        max_frame_bytes=config.limits.max_frame_bytes,
        sessions_queue_frames=config.server.send_queue_frames,
    )
    app = web.Application(
        client_max_size=config.limits.max_frame_bytes,
        middlewares=[make_error_middleware(lambda code: metrics.errors.labels(code).inc())],
    )
    app[SERVICES] = services
    app.add_routes(ROUTES)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_say_goodbye)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    async with AsyncExitStack() as stack:
        await svc.storage.open()
        stack.push_async_callback(svc.storage.aclose)
        stack.push_async_callback(svc.sessions.wait_for_cleanups, 10.0)
        stack.callback(svc.presence.close)
        watcher = asyncio.create_task(svc.accounts.watch_revocations(), name="revocations")
        stack.push_async_callback(_cancel, watcher)
        sweeper = asyncio.create_task(svc.sessions.sweep_silent(svc.heartbeat_s), name="sweep")
        stack.push_async_callback(_cancel, sweeper)
        await svc.media.open()
        stack.push_async_callback(svc.media.aclose)
        retention = asyncio.create_task(svc.media.run_retention(), name="media-retention")
        stack.push_async_callback(_cancel, retention)
        log.info("chatd %s node %s ready", svc.version, svc.node_id)
        yield


async def _say_goodbye(app: web.Application) -> None:
    await app[SERVICES].sessions.shutdown()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
