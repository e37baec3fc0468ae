"""The ``chatd`` command: run the server and administer users."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from chatd import __version__, logs
from chatd.config import Config, ConfigError, is_loopback, load
from chatd.core.errors import ChatdError
from chatd.plugins import PluginError

if TYPE_CHECKING:
    from chatd.gateway.context import Services

T = TypeVar("T")
#: The actor of every change made from the command line, in the audit log.
CLI_ACTOR = "cli"
app = typer.Typer(
    help="chatd: a self-hosted chat server.", no_args_is_help=True, add_completion=False
)
user_app = typer.Typer(help="Create and administer user accounts.", no_args_is_help=True)
invite_app = typer.Typer(
    help='Invites for servers with registration = "invite".', no_args_is_help=True
)
group_app = typer.Typer(help="Inspect groups.", no_args_is_help=True)
push_app = typer.Typer(help="Push notifications.", no_args_is_help=True)


cluster_app = typer.Typer(help="Inspect a cluster of chatd nodes.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(cluster_app, name="cluster")
app.add_typer(group_app, name="group")
app.add_typer(invite_app, name="invite")
app.add_typer(push_app, name="push")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (see config.example.toml).")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where chatd keeps its data (default ./chatd-data)."),
]


def _config(config: Path | None, **server: Any) -> Config:
    try:
        return load(config).with_server(**server)
    except ConfigError as exc:
        _config_error(exc)


def _config_error(exc: ConfigError) -> NoReturn:
    """Exit 2: the configuration (or a plugin's settings) is wrong; restarting will not help."""
    typer.echo(f"chatd: configuration error: {exc}", err=True)
    raise typer.Exit(2) from None


def _fail(message: str) -> NoReturn:
    typer.echo(f"chatd: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8080).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the server (WebSocket gateway, REST API, storage) in this process."""
    import uvloop
    from aiohttp import web

    from chatd.app import build_app

    cfg = _config(config, host=host, port=port, data_dir=str(data_dir) if data_dir else None)
    logs.setup(cfg.log.level, cfg.log.repeats_per_minute)
    # aiosqlite logs every statement with its parameters at DEBUG: message text
    # and password hashes must not reach the logs.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
    log = logging.getLogger("chatd")
    lock = _lock_data_dir(cfg.data_path)
    if cfg.auth.registration == "open" and not is_loopback(cfg.server.host):
        log.warning(
            "registration is open on %s: anyone who reaches this address can sign up "
            '(set [auth] registration = "invite" or "closed" to prevent it)',
            cfg.server.host,
        )
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        application = build_app(cfg)
    except ConfigError as exc:  # a plugin's settings
        _config_error(exc)
    except Exception as exc:  # a missing plugin, an unwritable data dir
        _fail(str(exc))
    log.info(
        "chatd %s on http://%s:%s (data in %s)",
        __version__,
        cfg.server.host,
        cfg.server.port,
        cfg.data_path.resolve(),
    )
    try:
        web.run_app(
            application,
            host=cfg.server.host,
            port=cfg.server.port,
            loop=loop,
            print=None,
            shutdown_timeout=cfg.server.shutdown_timeout_s,
            access_log=None,
            backlog=4096,  # a reconnect storm must not overflow the listen queue
        )
    except OSError as exc:
        _fail(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror or exc}")
    finally:
        lock.close()


def _lock_data_dir(data_dir: Path) -> Any:
    """Hold an exclusive lock on the data directory while serving.

    Two servers on one directory would split sockets, presence and caches between
    them without either knowing; CLI commands may still run beside one server.
    """
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "serve.lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _fail(f"another chatd serve is already using {data_dir}")
    return handle


@app.command()
def version() -> None:
    """Print chatd's version."""
    typer.echo(__version__)


def _with_services(cfg: Config, action: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``action(services)`` with the configured store opened for this command only.

    The wiring is the server's (``build_services``); no socket is ever open here,
    so a running server learns of bans and revocations through the revocation
    feed it polls.
    """
    from chatd.app import build_services

    async def run() -> T:
        services = build_services(cfg)
        await services.storage.open()
        try:
            return await action(services)
        finally:
            await services.fanout.wait_idle(5.0)
            await services.storage.aclose()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        _config_error(exc)
    except PluginError as exc:
        _fail(str(exc))
    except ChatdError as exc:
        _fail(exc.message)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Username: 3-32 of a-z 0-9 _ . -")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a server admin.")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ] = False,
    display_name: Annotated[str | None, typer.Option(help="Name shown to others.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user (works whatever the registration policy)."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    password = _read_password(password_stdin)
    user = _with_services(
        cfg,
        lambda s: s.admin.create_user(
            CLI_ACTOR, name, password, display_name=display_name, is_admin=admin
        ),
    )
    typer.echo(f"created user {user.username} ({user.user_id}){' as admin' if admin else ''}")


@user_app.command("list")
def user_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List every user: id, name, admin and banned flags."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)

    users = _with_services(cfg, lambda s: s.admin.all_users())
    typer.echo(f"{'USERNAME':<32} {'USER ID':<36} FLAGS")
    for u in users:
        flags = ",".join(f for f, on in (("admin", u.is_admin), ("banned", u.banned)) if on)
        typer.echo(f"{u.username:<32} {u.user_id:<36} {flags}")


@user_app.command("passwd")
def user_passwd(
    name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a user's password; every device of the user is logged out."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    password = _read_password(password_stdin)

    async def reset(s: Services) -> None:
        user = await s.admin.user_by_name(name)
        await s.admin.reset_password(CLI_ACTOR, user.user_id, password)

    _with_services(cfg, reset)
    typer.echo(f"password of {name} changed; its devices are logged out")


@user_app.command("ban")
def user_ban(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Ban a user: logins are refused and open connections are closed."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    _with_services(cfg, lambda s: _by_name(s, name, s.admin.ban))
    typer.echo(f"banned {name}")


@user_app.command("unban")
def user_unban(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Lift a ban; the user can log in again."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    _with_services(cfg, lambda s: _by_name(s, name, s.admin.unban))
    typer.echo(f"unbanned {name}")


@user_app.command("admin")
def user_admin(
    name: str,
    remove: Annotated[
        bool, typer.Option("--remove", help="Take the admin role away instead.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Make an existing user a server admin (or, with --remove, no longer one)."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)

    async def change(s: Services) -> Any:
        user = await s.admin.user_by_name(name)
        return await s.admin.set_admin(CLI_ACTOR, user.user_id, not remove)

    _with_services(cfg, change)
    typer.echo(f"{name} is {'no longer' if remove else 'now'} an admin")


async def _by_name(
    services: Services, name: str, action: Callable[[str, str], Awaitable[Any]]
) -> Any:
    """``action(CLI_ACTOR, user_id)`` on the user called ``name``."""
    user = await services.admin.user_by_name(name)
    return await action(CLI_ACTOR, user.user_id)


@invite_app.command("create")
def invite_create(
    uses: Annotated[int, typer.Option(min=1, help="How many registrations it allows.")] = 1,
    days: Annotated[int, typer.Option(min=1, help="Days until it expires.")] = 7,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Make an invite code to give to someone who should be able to register."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    invite = _with_services(cfg, lambda s: s.admin.invite(CLI_ACTOR, uses, days * 86_400))
    typer.echo(invite["code"])


@group_app.command("list")
def group_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List every group: id, member count, name."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    groups = _with_services(cfg, lambda s: s.admin.all_groups())
    typer.echo(f"{'GROUP ID':<36} {'MEMBERS':>7}  NAME")
    for group in groups:
        typer.echo(f"{group['group_id']:<36} {len(group['members']):>7}  {group['name']}")


@group_app.command("show")
def group_show(
    group_id: Annotated[str, typer.Argument(help="The group's id (see `chatd group list`).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show a group: name, description and members with their roles."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)
    group = _with_services(cfg, lambda s: s.admin.group(group_id))
    typer.echo(f"name:        {group['name']}")
    typer.echo(f"description: {group['description'] or ''}")
    typer.echo(f"created:     {group['created_at']} by {group['created_by']}")
    typer.echo(f"members:     {len(group['members'])} of at most {group['max_members']}")
    for member in group["members"]:
        typer.echo(f"  {member['user_id']:<36} {member['role']:<6} joined {member['joined_at']}")


@push_app.command("test")
def push_test(
    device_id: Annotated[str, typer.Argument(help="The device (see GET /devices).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send a test notification to a device through its provider; print the answer."""
    cfg = _config(config, data_dir=str(data_dir) if data_dir else None)

    async def send(s: Services) -> Any:
        for provider in s.push.providers.values():
            await provider.open()
        try:
            return await s.push.send_test(device_id)
        finally:
            for provider in s.push.providers.values():
                await provider.close()

    target, result = _with_services(cfg, send)
    typer.echo(f"provider: {target.provider}")
    typer.echo(f"outcome:  {result.outcome.value}")
    if result.reason:
        typer.echo(f"reason:   {result.reason}")
    if result.retry_after_s is not None:
        typer.echo(f"retry after: {result.retry_after_s:g} s")
    if result.outcome.value != "delivered":
        raise typer.Exit(1)


@cluster_app.command("status")
def cluster_status(
    token: Annotated[
        str,
        typer.Option(envvar="CHATD_TOKEN", help="An admin's bearer token (POST /auth/login)."),
    ],
    url: Annotated[
        str | None,
        typer.Option(help="A running node's base URL (default: [server] host and port)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show every node as a running node sees it: GET /api/v1/cluster, as a table.

    Any node answers for the whole cluster; ask another one to compare views.
    """
    from chatd.client import ApiError, ChatdClient

    if url is None:
        cfg = _config(config)
        url = f"http://{cfg.server.host}:{cfg.server.port}"

    async def ask() -> dict[str, Any]:
        async with ChatdClient(url, token=token) as client:
            return await client.cluster()

    try:
        answer = asyncio.run(ask())
    except ApiError as exc:
        _fail(f"{url}: {exc.code}: {exc.message}")
    except OSError as exc:  # aiohttp's connection errors are OSErrors
        _fail(f"cannot reach {url}: {exc}")
    typer.echo(f"answered by {answer['node_id']}")
    typer.echo(f"{'NODE ID':<24} {'ADDRESS':<28} {'STATUS':<8} {'CONNECTIONS':>11}  JOINED")
    for node in answer["nodes"]:
        typer.echo(
            f"{node['node_id']:<24} {node['address'] or '-':<28} {node['status']:<8} "
            f"{node['connections']:>11}  {node['joined_at']}"
        )


@app.command()
def migrate(
    source: Annotated[
        str,
        typer.Option(
            "--from", help="sqlite:PATH: the data directory (or chatd.sqlite3) to copy from."
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--to", help="scylla://HOST[:PORT][,HOST...]/KEYSPACE: the keyspace to copy into."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Take [storage.scylla] credentials, local_dc, replication and consistency "
            "from this file (--to gives hosts and keyspace).",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=5000, help="Records per page and rows per batch.")
    ] = 200,
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Pages written at once (each: many requests).")
    ] = 16,
    verify_only: Annotated[
        bool, typer.Option("--verify-only", help="Only compare a completed copy with the source.")
    ] = False,
) -> None:
    """Copy a SQLite chatd into a ScyllaDB/Cassandra keyspace, then verify it.

    Stop `chatd serve` on the source first. Interrupted? Run the same command
    again: it resumes. Exit code 0 only if both sides match.
    """
    from chatd.migrate.runner import MigrateError, Options, parse_source, parse_target
    from chatd.migrate.runner import migrate as run_migration

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Cassandra 5 warns about the adapter's session keyspace on every prepare: noise here.
    logging.getLogger("cassandra.protocol").addFilter(
        lambda record: "`USE <keyspace>`" not in record.getMessage()
    )
    try:
        options = Options(
            source=parse_source(source),
            target=parse_target(target),
            batch_size=batch_size,
            concurrency=concurrency,
            verify_only=verify_only,
        )
    except MigrateError as exc:
        typer.echo(f"chatd: {exc}", err=True)
        raise typer.Exit(2) from None
    cfg = _config(config) if config else None
    from chatd.migrate.progress import RichReporter

    reporter = RichReporter()
    try:
        if cfg is not None:
            options.target = {**_scylla_settings(cfg), **options.target}
        with reporter:
            outcome = asyncio.run(run_migration(options, reporter))
    except ConfigError as exc:
        _config_error(exc)
    except MigrateError as exc:
        _fail(str(exc))
    except ChatdError as exc:
        _fail(f"{exc.message}; run the same command again to resume")
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("cassandra"):
            raise
        _fail("the ScyllaDB driver is not installed: ./scripts/setup scylla")
    from rich.console import Console

    _print_migration(Console(), outcome.report, target)
    if not outcome.report.ok:
        raise typer.Exit(1)


def _scylla_settings(cfg: Config) -> dict[str, Any]:
    """``[storage.scylla]`` of the config file, checked as the ScyllaDB plugin checks it."""
    import dataclasses

    from chatd.plugins import PluginContext
    from chatd.storage.scylla.settings import ScyllaSettings

    context = PluginContext("storage.scylla", cfg.data_path, cfg.server.node_id)
    settings = ScyllaSettings.read(cfg.storage.tables.get("scylla", {}), context)
    return dataclasses.asdict(settings)


def _print_migration(console: Any, report: Any, target: str) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="chatd migrate: source vs target")
    for column in ("entity", "source", "target", ""):
        table.add_column(column, justify="right" if column in ("source", "target") else "left")
    for name, src, dst in report.counts:
        table.add_row(name, f"{src:,}", f"{dst:,}", "ok" if src == dst else "MISMATCH")
    console.print(table)
    for problem in report.problems[:50]:
        console.print(Text("mismatch: ", style="red") + Text(problem))
    if len(report.problems) > 50:
        console.print(f"... and {len(report.problems) - 50} more")
    if report.ok:
        console.print(
            Text(
                f"verified: {report.chats:,} chats identical on both sides. Set "
                f'[storage] backend = "scylla" for {target} and start chatd serve.'
            )
        )
    else:
        console.print(Text("verification FAILED: do not switch to the target", style="red"))
