"""Composition root: config -> plugins -> ports -> services -> gateway.

The only module that knows every concrete class. Everything it opens is closed
in reverse order by one AsyncExitStack when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import web

from chatd import __version__, plugins
from chatd.cluster.local import LocalRouter
from chatd.cluster.service import Cluster, load_meta
from chatd.cluster.wiring import ClusterParts, build_cluster
from chatd.config import Config
from chatd.core.events import Invalidation
from chatd.core.ids import new_id
from chatd.core.ports.owners import Owners
from chatd.core.ports.presence import Presence
from chatd.core.ports.router import Router
from chatd.core.ports.storage import Storage
from chatd.core.services.accounts import AccountService
from chatd.core.services.admin import AdminService
from chatd.core.services.chats import ChatService
from chatd.core.services.contacts import ContactService
from chatd.core.services.fanout import FanOut, invalidation_handler
from chatd.core.services.groups import GroupService
from chatd.core.services.keys import KeyService
from chatd.core.services.media import MediaService
from chatd.core.services.messages import MessageService
from chatd.core.services.notify import NotifyService
from chatd.core.services.presence import PresenceService
from chatd.core.services.push import PushService
from chatd.core.services.receipts import ReceiptService
from chatd.core.services.sealed import CiphertextRetention
from chatd.core.services.sync import SyncService
from chatd.core.workgate import WorkGate
from chatd.gateway import admin_live
from chatd.gateway.address import AddressResolver
from chatd.gateway.admin_stats import AdminStats
from chatd.gateway.admission import Admission
from chatd.gateway.context import SERVICES, Services
from chatd.gateway.errors import make_error_middleware
from chatd.gateway.rest.admin import admin_only
from chatd.gateway.routes import ROUTES
from chatd.gateway.sessions import SessionRegistry, SocketLimits
from chatd.media.processor import PoolProcessor
from chatd.metrics import Metrics
from chatd.presence.local import LocalPresence
from chatd.push import guard
from chatd.push.context import PushContext
from chatd.push.worker import PushMetrics, PushWorker, WorkerSettings
from chatd.security.argon2 import Argon2Hasher
from chatd.testing import faults

log = logging.getLogger(__name__)


def make_storage(config: Config, node_id: str, metrics: Metrics) -> Storage:
    """The configured storage plugin (``[storage] backend``), given its own table."""
    name = config.storage.backend
    context = plugins.PluginContext(
        f"storage.{name}", config.data_path, node_id, metrics.observe_storage
    )
    storage: Storage = plugins.create(plugins.STORAGE, name, config.storage.settings(), context)
    return storage


def make_accounts(config: Config, storage: Storage, fanout: FanOut) -> AccountService:
    auth, limits = config.auth, config.limits
    hasher = Argon2Hasher(
        time_cost=auth.argon2_time_cost,
        memory_kib=auth.argon2_memory_kib,
        parallelism=auth.argon2_parallelism,
    )
    return AccountService(
        storage,
        hasher,
        fanout,
        registration=auth.registration,  # type: ignore[arg-type]
        token_ttl_days=auth.token_ttl_days,
        login_attempts_per_minute=limits.login_attempts_per_minute,
        login_attempts_per_address_per_minute=limits.login_attempts_per_address_per_minute,
        login_attempts_per_username_per_minute=limits.login_attempts_per_username_per_minute,
        registrations_per_address_per_hour=limits.registrations_per_address_per_hour,
        min_password_length=auth.min_password_length,
        hash_gate=WorkGate(
            limits.password_hashes_at_once, limits.password_hash_queue, what="password checks"
        ),
    )


def make_media(config: Config, storage: Storage, node_id: str, metrics: Metrics) -> MediaService:
    """The media service over the configured blob store (a plugin) and a process pool."""
    media = config.media
    context = plugins.PluginContext(
        f"media.{media.store}", config.data_path, node_id, metrics.observe_media
    )
    blobs = plugins.create(plugins.MEDIA, media.store, media.settings(), context)
    processor = PoolProcessor(
        workers=media.workers,
        thumbnail_format=media.thumbnail_format,
        memory_bytes=media.worker_memory_mb << 20,
        max_duration_s=media.max_duration_s,
        observe=metrics.observe_media,
    )
    limits = config.limits
    return MediaService(
        storage,
        blobs,
        processor,
        max_upload_bytes=limits.max_upload_bytes,
        uploads_per_minute=limits.uploads_per_minute,
        concurrent_uploads=limits.concurrent_uploads_per_user,
        min_bytes_per_s=limits.upload_min_bytes_per_s,
        rate_window_s=limits.upload_rate_window_s,
        unsent_bytes=limits.unsent_upload_bytes,
        bytes_per_day=limits.upload_bytes_per_day,
        allowed_types=media.allowed_types,
        retention_grace_ms=int(media.retention_grace_hours * 3_600_000),
        retention_interval_s=media.retention_interval_minutes * 60,
    )


def make_push(
    config: Config,
    storage: Storage,
    presence: Presence,
    node_id: str,
    metrics: Metrics,
    fanout: FanOut,
) -> tuple[NotifyService, PushService, PushWorker]:
    """The enabled push providers (one per ``[push.<name>]`` table, each a plugin given
    its table), the notify step, the push service and the outbox worker. A change to
    a user's targets is an invalidation: every node's notify step forgets them."""
    push = config.push
    providers = {}
    for name, table in push.tables.items():
        context = PushContext(
            f"push.{name}",
            config.data_path,
            node_id,
            allow_private_endpoints=push.allow_private_endpoints,
            timeout_s=push.timeout_ms / 1000,
        )
        providers[name] = plugins.create(plugins.PUSH, name, table, context)
    notify = NotifyService(
        storage, presence, enabled=bool(providers), include_content=push.include_content
    )

    async def check_endpoint(url: str) -> None:
        await guard.check_endpoint(url, allow_private=push.allow_private_endpoints)

    def targets_changed(user_id: str) -> None:
        fanout.invalidate(Invalidation.push_targets((user_id,)))

    service = PushService(
        storage,
        targets_changed,
        providers,
        check_endpoint,
        dead_retention_days=push.dead_retention_days,
    )
    settings = WorkerSettings(
        retry_base_ms=push.retry_base_ms,
        max_attempts=push.max_attempts,
        timeout_s=push.timeout_ms / 1000,
        concurrency=push.concurrency,
        queue_size=push.queue_size,
        batch_size=push.batch_size,
        poll_interval_s=push.poll_interval_ms / 1000,
    )
    counters = PushMetrics(
        sent=lambda provider: metrics.push_sent.labels(provider).inc(),
        failed=lambda provider, reason: metrics.push_failed.labels(provider, reason).inc(),
        dead=lambda provider: metrics.push_dead.labels(provider).inc(),
        depth=metrics.push_outbox_depth.set,
    )
    worker = PushWorker(
        storage,
        presence,
        providers,
        settings,
        metrics=counters,
        forget_targets=targets_changed,
    )
    notify.enqueued = worker.kick
    return notify, service, worker


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


def build_services(
    config: Config,
    *,
    router: Router | None = None,
    presence: Presence | None = None,
    owners: Owners | None = None,
    routing: ClusterParts | None = None,
) -> Services:
    """Every service, wired from ``config``: the server's and every CLI command's.

    ``router``/``presence`` default to this process's own (a cluster of one);
    tests pass one router and one presence to several apps in one process to
    stand for nodes of a cluster sharing a store. ``routing`` (a node's cluster
    parts, ``chatd.cluster.wiring``) supplies the router, presence and
    ``owners`` (each chat's writes sent to its owner node); with ``[cluster]
    enabled`` it is built on the gossip membership. Nothing is opened here
    (``_lifetime`` and the CLI open what they use). A plugin's bad settings
    raise ``ConfigError``; an unknown plugin ``PluginError``.
    """
    metrics = Metrics()
    node_id = node_id_for(config)
    storage = make_storage(config, node_id, metrics)
    sessions = SessionRegistry()
    cluster = make_cluster(config, node_id, metrics)
    if routing is None and cluster is not None and router is None:
        routing = build_cluster(
            cluster.membership,
            cluster.sealer,
            cluster.streams,
            public_url=config.cluster.public_url,
        )
    if routing is not None:
        router, presence, owners = routing.router, routing.presence, routing.owners
        routing.register_metrics(metrics.registry)
    router = router or LocalRouter()
    presence = presence or LocalPresence()
    chats = ChatService(storage)
    fanout = FanOut(router, chats)
    # The registry itself unless a test fault is switched on (chatd/testing/faults.py).
    delivery = faults.local_delivery(sessions)
    notify, push, push_worker = make_push(config, storage, presence, node_id, metrics, fanout)
    router.attach(
        node_id,
        delivery,
        invalidation_handler(
            chats, sessions.disconnect_devices, sessions.disconnect_users, notify.forget_targets
        ),
    )
    receipts = ReceiptService(storage, chats, fanout)
    media = make_media(config, storage, node_id, metrics)
    fanout.on_release = notify.released
    accounts = make_accounts(config, storage, fanout)
    accounts.on_revoked = push.devices_revoked
    groups = GroupService(
        storage,
        chats,
        fanout,
        max_members=config.limits.max_group_members,
        creations_per_hour=config.limits.groups_created_per_hour,
        changes_per_minute=config.limits.group_changes_per_minute,
        owners=owners,
    )
    admin = AdminService(
        storage, accounts, groups, presence, push=push, push_depth=lambda: push_worker.depth
    )
    keys = KeyService(
        storage,
        fanout,
        chats,
        fetches_per_minute=config.limits.key_fetches_per_minute,
        claims_per_device_per_hour=config.limits.key_claims_per_device_per_hour,
        prekey_low_watermark=config.e2e.prekey_low_watermark,
    )
    accounts.keys_changed = keys.announce_devices
    return Services(
        storage=storage,
        accounts=accounts,
        contacts=ContactService(storage),
        chats=chats,
        groups=groups,
        messages=MessageService(
            storage,
            chats,
            fanout,
            receipts,
            media,
            max_message_bytes=config.limits.max_message_bytes,
            messages_per_second=config.limits.messages_per_second,
            max_devices_per_message=config.e2e.max_devices_per_message,
            max_ciphertext_bytes=config.e2e.max_ciphertext_bytes,
            owners=owners,
        ),
        receipts=receipts,
        presence=PresenceService(
            storage, chats, fanout, presence, typing_ttl=config.presence.typing_timeout_s
        ),
        sync=SyncService(storage),
        media=media,
        keys=keys,
        sealed=CiphertextRetention(
            storage,
            retention_days=config.e2e.ciphertext_retention_days,
            interval_s=config.e2e.retention_interval_minutes * 60,
        ),
        sessions=sessions,
        fanout=fanout,
        router=router,
        presence_state=presence,
        metrics=metrics,
        node_id=node_id,
        version=__version__,
        heartbeat_s=config.server.heartbeat_s,
        allowed_origins=list(config.server.allowed_origins),
        max_frame_bytes=config.limits.max_frame_bytes,
        socket_limits=SocketLimits(
            frames=config.server.send_queue_frames,
            bytes=config.limits.max_socket_buffer_bytes,
            stall_s=config.limits.socket_stall_s,
        ),
        admission=Admission(
            presence,
            per_user=config.limits.max_sockets_per_user,
            per_address=config.limits.max_sockets_per_address,
            descriptor_reserve=config.limits.descriptor_reserve,
        ),
        addresses=AddressResolver(config.server.trusted_proxies),
        notify=notify,
        push=push,
        push_worker=push_worker,
        cluster=cluster,
        routing=routing,
        admin=admin,
        stats=AdminStats(
            node_id=node_id,
            storage_backend=config.storage.backend,
            sessions=sessions,
            metrics=metrics,
            admin=admin,
            cluster=cluster,
        ),
    )


def make_cluster(config: Config, node_id: str, metrics: Metrics) -> Cluster | None:
    """This node's gossip membership and cluster port (``[cluster]``), not started."""
    if not config.cluster.enabled:
        return None
    return Cluster.from_config(config.cluster, node_id, metrics.registry)


def build_app(
    config: Config,
    *,
    router: Router | None = None,
    presence: Presence | None = None,
    cluster: ClusterParts | None = None,
) -> web.Application:
    """The app on ``build_services``; see there for ``router`` and ``presence``.

    ``cluster``: this node's cluster parts on a membership of the caller's (tests
    run several nodes in one process); ``[cluster] enabled`` builds them itself.
    """
    services = build_services(config, router=router, presence=presence, routing=cluster)
    metrics = services.metrics
    app = web.Application(
        client_max_size=config.limits.max_frame_bytes,
        middlewares=[
            make_error_middleware(lambda code: metrics.errors.labels(code).inc()),
            admin_only,
        ],
    )
    app[SERVICES] = services
    app.add_routes(ROUTES)
    admin_live.install(app)
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_say_goodbye)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    async with AsyncExitStack() as stack:
        svc.admission.start()
        await svc.storage.open()
        stack.push_async_callback(svc.storage.aclose)
        if svc.routing is not None:  # writes forwarded here finish before the storage closes
            svc.routing.start()
            stack.push_async_callback(svc.routing.close)
        await svc.accounts.open()
        for provider in svc.push.providers.values():
            await provider.open()
            stack.push_async_callback(provider.close)
        svc.push_worker.start()
        stack.push_async_callback(svc.push_worker.stop)
        stack.push_async_callback(svc.notify.wait_idle, 5.0)
        if svc.cluster is not None:
            meta = load_meta(lambda: len(svc.sessions))
            if svc.routing is not None:  # peers send draining clients to its url
                meta = svc.routing.with_url(meta)
            await svc.cluster.start(meta)
            stack.push_async_callback(svc.cluster.stop)
        stack.push_async_callback(svc.fanout.wait_idle, 5.0)
        stack.push_async_callback(svc.sessions.wait_for_cleanups, 10.0)
        stack.callback(svc.router.detach, svc.node_id)
        stack.callback(svc.presence_state.close)
        stack.callback(svc.presence.close)
        watcher = asyncio.create_task(svc.accounts.watch_revocations(), name="revocations")
        stack.push_async_callback(_cancel, watcher)
        sweeper = asyncio.create_task(svc.sessions.sweep_silent(svc.heartbeat_s), name="sweep")
        stack.push_async_callback(_cancel, sweeper)
        await svc.media.open()
        stack.push_async_callback(svc.media.aclose)
        retention = asyncio.create_task(svc.media.run_retention(), name="media-retention")
        stack.push_async_callback(_cancel, retention)
        stats = asyncio.create_task(svc.stats.run(), name="admin-stats")
        stack.push_async_callback(_cancel, stats)
        expiry = asyncio.create_task(svc.sealed.run(), name="ciphertext-retention")
        stack.push_async_callback(_cancel, expiry)
        dead = asyncio.create_task(svc.push.run_dead_retention(), name="push-dead-retention")
        stack.push_async_callback(_cancel, dead)
        log.info("chatd %s node %s ready", svc.version, svc.node_id)
        yield


async def _say_goodbye(app: web.Application) -> None:
    svc = app[SERVICES]
    url = svc.routing.reconnect_url() if svc.routing is not None else None
    await svc.sessions.shutdown(url=url)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
