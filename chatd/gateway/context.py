"""What a request handler can reach: the services, wired by ``chatd.app``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from chatd.cluster.service import Cluster
from chatd.cluster.wiring import ClusterParts
from chatd.core.ports.presence import Presence
from chatd.core.ports.router import Router
from chatd.core.ports.storage import Storage
from chatd.core.services.accounts import AccountService
from chatd.core.services.admin import AdminService
from chatd.core.services.chats import ChatService
from chatd.core.services.contacts import ContactService
from chatd.core.services.fanout import FanOut
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
from chatd.gateway.address import AddressResolver
from chatd.gateway.admin_stats import AdminStats
from chatd.gateway.admission import Admission
from chatd.gateway.sessions import SessionRegistry, SocketLimits
from chatd.metrics import Metrics
from chatd.push.worker import PushWorker


@dataclass
class Services:
    storage: Storage
    accounts: AccountService
    contacts: ContactService
    chats: ChatService
    groups: GroupService
    messages: MessageService
    receipts: ReceiptService
    #: Announces presence and typing to contacts (built on ``presence_state``).
    presence: PresenceService
    sync: SyncService
    media: MediaService
    keys: KeyService
    sealed: CiphertextRetention
    sessions: SessionRegistry
    fanout: FanOut
    router: Router
    #: The presence port: which users and devices are online, on this node or any.
    presence_state: Presence
    metrics: Metrics
    node_id: str
    version: str
    heartbeat_s: float
    allowed_origins: list[str]
    max_frame_bytes: int
    socket_limits: SocketLimits
    admission: Admission
    addresses: AddressResolver
    notify: NotifyService
    push: PushService
    push_worker: PushWorker
    admin: AdminService
    stats: AdminStats
    started: float = field(default_factory=time.monotonic)
    #: This node's cluster (``[cluster] enabled``): ``cluster.membership`` is the
    #: ``Membership``, ``cluster.streams`` the node-to-node port. None alone.
    cluster: Cluster | None = None
    #: Routing over that membership (chat owners, user homes, links), or the
    #: cluster parts a test gave; None alone.
    routing: ClusterParts | None = None


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
