"""Configuration: frozen dataclasses read from TOML.

Every key has its default here, and only here. An unknown key or a value of the
wrong type stops start-up with a message naming the key, so a typo never runs
silently with a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the file."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./chatd-data"
    node_id: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    heartbeat_s: float = 30.0
    send_queue_frames: int = 4096
    shutdown_timeout_s: float = 10.0
    #: Peers whose X-Forwarded-For names the real client (addresses or networks).
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])


#: Marks the field that gathers a section's plugin tables (``[storage.<name>]``):
#: each is passed raw to the plugin of that name, which validates it itself.
PLUGIN_TABLES = {"plugin_tables": True}


@dataclass(frozen=True)
class StorageConfig:
    backend: str = "sqlite"
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=PLUGIN_TABLES)

    def settings(self) -> dict[str, Any]:
        """The configured backend's ``[storage.<backend>]`` table, raw."""
        return self.tables.get(self.backend, {})


@dataclass(frozen=True)
class AuthConfig:
    registration: str = "open"
    token_ttl_days: int = 365
    min_password_length: int = 6
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 65536
    max_frame_bytes: int = 262144
    messages_per_second: float = 20.0
    login_attempts_per_minute: int = 10
    login_attempts_per_address_per_minute: int = 30
    login_attempts_per_username_per_minute: int = 60
    registrations_per_address_per_hour: int = 10
    password_hashes_at_once: int = 2
    password_hash_queue: int = 32
    max_group_members: int = 256
    groups_created_per_hour: int = 30
    group_changes_per_minute: int = 60
    max_upload_bytes: int = 67108864
    key_fetches_per_minute: int = 60
    max_sockets_per_user: int = 16
    max_sockets_per_address: int = 512
    max_socket_buffer_bytes: int = 8 << 20
    socket_stall_s: float = 30.0
    descriptor_reserve: int = 256
    uploads_per_minute: int = 30
    concurrent_uploads_per_user: int = 4
    upload_min_bytes_per_s: int = 1024
    upload_rate_window_s: float = 30.0
    unsent_upload_bytes: int = 536870912
    upload_bytes_per_day: int = 4294967296
    key_claims_per_device_per_hour: int = 60


#: Accepted upload types, as sniffed from the bytes: pictures, video, sound and
#: common documents. No executables, scripts, HTML or SVG.
DEFAULT_MEDIA_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "video/quicktime",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/webm",
    "audio/wav",
    "audio/flac",
    "application/pdf",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/json",
    "application/zip",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)


@dataclass(frozen=True)
class MediaConfig:
    store: str = "local"
    allowed_types: list[str] = field(default_factory=lambda: list(DEFAULT_MEDIA_TYPES))
    thumbnail_format: str = "jpeg"
    workers: int = 2
    retention_grace_hours: float = 24.0
    retention_interval_minutes: float = 60.0
    worker_memory_mb: int = 2048
    max_duration_s: float = 43200.0
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=PLUGIN_TABLES)

    def settings(self) -> dict[str, Any]:
        """The configured store's ``[media.<store>]`` table, raw."""
        return self.tables.get(self.store, {})


@dataclass(frozen=True)
class PresenceConfig:
    typing_timeout_s: float = 6.0


@dataclass(frozen=True)
class PushConfig:
    """``[push]``; each ``[push.<name>]`` table enables that provider and is checked by it."""

    retry_base_ms: int = 1000
    max_attempts: int = 8
    include_content: bool = False
    allow_private_endpoints: bool = False
    timeout_ms: int = 10000
    #: Sends in flight per provider, and notifications waiting for them (beyond: later).
    concurrency: int = 8
    queue_size: int = 1000
    #: Notifications a worker claims at once, and how often it looks for due ones.
    batch_size: int = 100
    poll_interval_ms: int = 1000
    #: Dead notifications are kept this long for admins (retry), then deleted.
    dead_retention_days: float = 30.0
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=PLUGIN_TABLES)

    @property
    def providers(self) -> list[str]:
        """The enabled providers: those with a ``[push.<name>]`` table."""
        return list(self.tables)


@dataclass(frozen=True)
class E2eConfig:
    """End-to-end encrypted messages: what the server relays and keeps."""

    ciphertext_retention_days: float = 30.0
    retention_interval_minutes: float = 60.0
    prekey_low_watermark: int = 20
    max_devices_per_message: int = 1024
    max_ciphertext_bytes: int = 131072


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    repeats_per_minute: int = 10


@dataclass(frozen=True)
class ClusterConfig:
    """Several nodes on one ScyllaDB keyspace, found by gossip (docs/operations.md)."""

    enabled: bool = False
    #: ``host:port`` for gossip (UDP) and node-to-node streams (TCP), one port.
    bind: str = "127.0.0.1:7946"
    #: What peers dial; empty: ``bind``.
    advertise: str = ""
    seeds: list[str] = field(default_factory=list)
    secret_file: str = ""
    #: Keys still accepted (not used to seal) while a new one is rolled out.
    previous_secret_files: list[str] = field(default_factory=list)
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 2
    retransmit_mult: int = 4
    gossip_interval_s: float = 0.2
    gossip_nodes: int = 3
    push_pull_interval_s: float = 30.0
    dead_forget_s: float = 3600.0
    meta_refresh_s: float = 2.0
    #: This node's base URL as clients reach it (``https://node1.example.org``):
    #: draining peers send their clients here (``reconnect`` frame ``url``).
    public_url: str = ""

    @property
    def advertised(self) -> str:
        return self.advertise or self.bind


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    push: PushConfig = field(default_factory=PushConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    e2e: E2eConfig = field(default_factory=E2eConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir).expanduser()

    def with_server(self, **changes: Any) -> Config:
        """A copy with some ``[server]`` keys replaced (command-line flags win)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        config = dataclasses.replace(self, server=dataclasses.replace(self.server, **changes))
        _check(config)
        return config


def load(path: Path | None = None) -> Config:
    """Read ``path`` (TOML) over the defaults; no path means all defaults."""
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Config:
    config = _build(Config, raw, "")
    _check(config)
    return config


def read_table(cls: type[T], raw: dict[str, Any], where: str) -> T:
    """The frozen dataclass ``cls`` from the TOML table ``[where]``, over its defaults.

    An unknown key or a value of the wrong type raises ``ConfigError`` naming it.
    Plugins read their own tables with it (``chatd.plugins.read_settings``).
    """
    return typing.cast(T, _build(cls, raw, where))


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    gather = next((f.name for f in fields if f.metadata.get("plugin_tables")), None)
    names = {f.name for f in fields} - {gather}
    values: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        name = f"{where}.{key}" if where else key
        if key not in names:
            if gather is not None and isinstance(value, dict):
                tables[key] = value  # [where.<plugin>]: the plugin checks it
                continue
            place = f"[{where}] " if where else ""
            known = ", ".join(sorted(names))
            if gather is not None:
                known += f", or a [{where}.<plugin>] table"
            raise ConfigError(f"{place}{key}: unknown key (known: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, name)
        else:
            values[key] = _coerce(hint, value, name)
    if gather is not None:
        values[gather] = tables
    return cls(**values)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{_label(name)} must be a list of {item.__name__}")
        return list(value)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{_label(name)} must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{_label(name)} must be {_kind(hint)}, got {value!r}")
    return value


def _label(name: str) -> str:
    section, _, key = name.rpartition(".")
    return f"[{section}] {key}" if section else key


def _kind(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint)
    )


def _check(config: Config) -> None:
    """Value ranges and choices; each failure names its key."""
    s, a, lim = config.server, config.auth, config.limits
    rules: list[tuple[bool, str]] = [
        (0 <= s.port <= 65535, "[server] port must be 0-65535"),
        (s.heartbeat_s > 0, "[server] heartbeat_s must be positive"),
        (s.send_queue_frames >= 16, "[server] send_queue_frames must be at least 16"),
        (config.storage.backend != "", "[storage] backend must name a storage plugin"),
        (
            a.registration in {"open", "invite", "closed"},
            "[auth] registration must be open, invite or closed",
        ),
        (lim.key_fetches_per_minute >= 0, "[limits] key_fetches_per_minute must be 0 or more"),
        (lim.max_sockets_per_user >= 1, "[limits] max_sockets_per_user must be at least 1"),
        (lim.max_sockets_per_address >= 1, "[limits] max_sockets_per_address must be at least 1"),
        (
            lim.max_socket_buffer_bytes >= 2 * lim.max_frame_bytes,
            "[limits] max_socket_buffer_bytes must be at least twice max_frame_bytes",
        ),
        (lim.socket_stall_s > 0, "[limits] socket_stall_s must be positive"),
        (lim.descriptor_reserve >= 16, "[limits] descriptor_reserve must be at least 16"),
        (a.token_ttl_days >= 1, "[auth] token_ttl_days must be at least 1"),
        (1 <= a.min_password_length <= 1024, "[auth] min_password_length must be 1-1024"),
        (a.argon2_time_cost >= 1, "[auth] argon2_time_cost must be at least 1"),
        (
            a.argon2_memory_kib >= 8 * a.argon2_parallelism,
            "[auth] argon2_memory_kib must be at least 8 x argon2_parallelism",
        ),
        (a.argon2_parallelism >= 1, "[auth] argon2_parallelism must be at least 1"),
        (lim.max_message_bytes >= 1, "[limits] max_message_bytes must be positive"),
        (
            lim.max_frame_bytes >= lim.max_message_bytes + 1024,
            "[limits] max_frame_bytes must exceed max_message_bytes by at least 1024",
        ),
        (lim.messages_per_second >= 0, "[limits] messages_per_second must be >= 0 (0: no limit)"),
        (lim.login_attempts_per_minute >= 1, "[limits] login_attempts_per_minute must be >= 1"),
        (
            lim.login_attempts_per_address_per_minute >= 1,
            "[limits] login_attempts_per_address_per_minute must be >= 1",
        ),
        (
            lim.login_attempts_per_username_per_minute >= 1,
            "[limits] login_attempts_per_username_per_minute must be >= 1",
        ),
        (
            lim.registrations_per_address_per_hour >= 0,
            "[limits] registrations_per_address_per_hour must be >= 0 (0: no limit)",
        ),
        (lim.password_hashes_at_once >= 1, "[limits] password_hashes_at_once must be >= 1"),
        (lim.password_hash_queue >= 0, "[limits] password_hash_queue must be >= 0"),
        (
            lim.groups_created_per_hour >= 0,
            "[limits] groups_created_per_hour must be >= 0 (0: no limit)",
        ),
        (
            lim.group_changes_per_minute >= 0,
            "[limits] group_changes_per_minute must be >= 0 (0: no limit)",
        ),
        (
            lim.key_claims_per_device_per_hour >= 0,
            "[limits] key_claims_per_device_per_hour must be >= 0 (0: no limit)",
        ),
        (2 <= lim.max_group_members <= 100_000, "[limits] max_group_members must be 2-100000"),
        (config.e2e.ciphertext_retention_days > 0, "[e2e] ciphertext_retention_days must be > 0"),
        (config.e2e.retention_interval_minutes > 0, "[e2e] retention_interval_minutes must be > 0"),
        (config.e2e.prekey_low_watermark >= 0, "[e2e] prekey_low_watermark must be >= 0"),
        (config.e2e.max_devices_per_message >= 1, "[e2e] max_devices_per_message must be >= 1"),
        (config.e2e.max_ciphertext_bytes >= 64, "[e2e] max_ciphertext_bytes must be >= 64"),
        (lim.max_upload_bytes >= 1, "[limits] max_upload_bytes must be positive"),
        (lim.uploads_per_minute >= 0, "[limits] uploads_per_minute must be 0 or more"),
        (
            lim.concurrent_uploads_per_user >= 1,
            "[limits] concurrent_uploads_per_user must be at least 1",
        ),
        (lim.upload_min_bytes_per_s >= 0, "[limits] upload_min_bytes_per_s must be 0 or more"),
        (lim.upload_rate_window_s > 0, "[limits] upload_rate_window_s must be positive"),
        (lim.unsent_upload_bytes >= 0, "[limits] unsent_upload_bytes must be 0 or more"),
        (lim.upload_bytes_per_day >= 0, "[limits] upload_bytes_per_day must be 0 or more"),
        (config.media.store != "", "[media] store must name a media store plugin"),
        (
            config.media.thumbnail_format in {"jpeg", "webp"},
            "[media] thumbnail_format must be jpeg or webp",
        ),
        (1 <= config.media.workers <= 64, "[media] workers must be 1-64"),
        (
            config.media.worker_memory_mb == 0 or config.media.worker_memory_mb >= 256,
            "[media] worker_memory_mb must be 0 (no cap) or at least 256",
        ),
        (config.media.max_duration_s > 0, "[media] max_duration_s must be positive"),
        (config.media.retention_grace_hours >= 0, "[media] retention_grace_hours must be >= 0"),
        (
            config.media.retention_interval_minutes > 0,
            "[media] retention_interval_minutes must be positive",
        ),
        (
            config.log.level.lower() in {"debug", "info", "warning", "error"},
            "[log] level must be debug, info, warning or error",
        ),
        (config.push.retry_base_ms >= 1, "[push] retry_base_ms must be at least 1"),
        (1 <= config.push.max_attempts <= 100, "[push] max_attempts must be 1-100"),
        (config.push.timeout_ms >= 100, "[push] timeout_ms must be at least 100"),
        (config.push.concurrency >= 1, "[push] concurrency must be at least 1"),
        (config.push.queue_size >= 1, "[push] queue_size must be at least 1"),
        (config.push.batch_size >= 1, "[push] batch_size must be at least 1"),
        (config.push.poll_interval_ms >= 10, "[push] poll_interval_ms must be at least 10"),
        (config.push.dead_retention_days > 0, "[push] dead_retention_days must be > 0"),
        (config.log.repeats_per_minute >= 0, "[log] repeats_per_minute must be >= 0 (0: no limit)"),
        (
            _networks_ok(s.trusted_proxies),
            "[server] trusted_proxies must be IP addresses or networks",
        ),
    ]
    rules += _cluster_rules(config)
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def _cluster_rules(config: Config) -> list[tuple[bool, str]]:
    c = config.cluster
    rules: list[tuple[bool, str]] = [
        (_host_port_ok(c.bind), '[cluster] bind must be "host:port"'),
        (not c.advertise or _host_port_ok(c.advertise), '[cluster] advertise must be "host:port"'),
        (all(_host_port_ok(s) for s in c.seeds), '[cluster] seeds must be "host:port" entries'),
        (
            0 < c.probe_timeout_s < c.probe_interval_s,
            "[cluster] probe_timeout_s must be positive and below probe_interval_s",
        ),
        (c.indirect_checks >= 0, "[cluster] indirect_checks must be 0 or more"),
        (c.suspicion_mult >= 1, "[cluster] suspicion_mult must be at least 1"),
        (c.suspicion_max_timeout_mult >= 1, "[cluster] suspicion_max_timeout_mult must be >= 1"),
        (c.retransmit_mult >= 1, "[cluster] retransmit_mult must be at least 1"),
        (c.gossip_interval_s > 0, "[cluster] gossip_interval_s must be positive"),
        (c.gossip_nodes >= 1, "[cluster] gossip_nodes must be at least 1"),
        (c.push_pull_interval_s > 0, "[cluster] push_pull_interval_s must be positive"),
        (c.dead_forget_s > 0, "[cluster] dead_forget_s must be positive"),
        (c.meta_refresh_s > 0, "[cluster] meta_refresh_s must be positive"),
    ]
    if c.enabled:
        rules += [
            (
                config.storage.backend != "sqlite",
                "[cluster] enabled needs storage every node shares: set [storage] backend "
                '= "scylla" (an SQLite file belongs to one node)',
            ),
            (c.secret_file != "", "[cluster] secret_file is required when enabled"),
            (
                _host_port_ok(c.advertised) and not _unspecified(c.advertised),
                "[cluster] advertise must name this node's reachable address when bind is "
                "0.0.0.0 or ::",
            ),
        ]
    return rules


def _host_port_ok(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host.strip("[]") and port.isdigit() and int(port) <= 65535)


def _unspecified(value: str) -> bool:
    host = value.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _networks_ok(values: list[str]) -> bool:
    try:
        for value in values:
            ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
