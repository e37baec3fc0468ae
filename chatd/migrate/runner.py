"""Copy a SQLite database into a ScyllaDB keyspace, resumably, then verify it.

The copy is a sequence of steps (users, devices, ... messages, cursors). Each
step reads its table in key order, a page (``batch_size`` records) at a time,
turns each page into rows for the target (``importer``), and writes up to
``concurrency`` pages at once. Every write is idempotent (same rows, same write
times), so the only thing a resumed run must know is where to start again.

**Checkpoint: in the target keyspace** (table ``import_progress``), not next to
the source. It then lives and dies with the data it describes: a dropped or
recreated keyspace has no checkpoint and is copied from the start, whereas a
file beside the source would claim rows are copied into a keyspace that no
longer holds them. A step's position is the last key of the longest prefix of
pages whose writes all finished, saved at most every ``CHECKPOINT_S`` and when
the step ends; a resumed run starts after it and rewrites at most the pages
that were in flight (harmlessly). The checkpoint also records a fingerprint of
the source: a resumed run refuses a source that changed since (rewriting cells
with the same write time and other values would leave either one).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from chatd.core.errors import ChatdError
from chatd.migrate.progress import Quiet, Reporter
from chatd.migrate.source import SourceError, SqliteSource

if TYPE_CHECKING:  # they import the ScyllaDB driver: loaded when a copy starts
    from chatd.migrate.steps import EpochCache, Step
    from chatd.storage.scylla.importer.writer import Importer

CHECKPOINT_S = 2.0
DEFAULT_BATCH = 200
DEFAULT_CONCURRENCY = 16


class MigrateError(Exception):
    """The migration cannot go on; the message says why and what to do."""


# -- where from, where to ---------------------------------------------------------------


def parse_source(text: str) -> Path:
    """``sqlite:PATH`` (a data directory or the database file)."""
    if not text.startswith("sqlite:"):
        raise MigrateError(f"--from must be sqlite:PATH, got {text!r}")
    path = text[len("sqlite:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path:
        raise MigrateError("--from sqlite:PATH needs a path")
    return Path(path)


def parse_target(text: str) -> dict[str, Any]:
    """``scylla://HOST[:PORT][,HOST[:PORT]...]/KEYSPACE`` -> ScyllaStorage options."""
    parts = urlsplit(text)
    if parts.scheme not in ("scylla", "cassandra") or not parts.netloc:
        raise MigrateError(f"--to must be scylla://HOST[,HOST]/KEYSPACE, got {text!r}")
    keyspace = unquote(parts.path.strip("/"))
    if not keyspace:
        raise MigrateError(f"--to {text!r} names no keyspace (scylla://HOST/KEYSPACE)")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,47}", keyspace):
        raise MigrateError(f"--to: {keyspace!r} is not a keyspace name (letters, digits, _)")
    hosts, ports = [], set()
    for item in parts.netloc.split(","):
        host, sep, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not sep:
            host, port = item, ""
        host = host.strip("[]")
        if not host:
            raise MigrateError(f"--to {text!r}: empty host")
        hosts.append(host)
        if port:
            if not port.isdigit():
                raise MigrateError(f"--to {text!r}: bad port {port!r}")
            ports.add(int(port))
    if len(ports) > 1:
        raise MigrateError("--to: every host must use the same port")
    options: dict[str, Any] = {"contact_points": hosts, "keyspace": keyspace}
    if ports:
        options["port"] = ports.pop()
    return options


# -- the run ------------------------------------------------------------------------------


@dataclass
class Options:
    source: Path
    target: dict[str, Any]  # ScyllaStorage options
    batch_size: int = DEFAULT_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    verify_only: bool = False


@dataclass
class Outcome:
    copied: bool  # False: the checkpoint said the copy was already complete
    report: Any  # chatd.migrate.verify.Report


async def migrate(options: Options, reporter: Reporter | None = None) -> Outcome:
    """Copy (or resume copying) and verify; the caller turns the report into an exit code."""
    from chatd.migrate.verify import verify
    from chatd.storage.scylla import ScyllaStorage
    from chatd.storage.scylla.importer.writer import Importer

    reporter = reporter or Quiet()
    source = SqliteSource(options.source)
    await source.open()
    try:
        reporter.note(f"source: {source.path} (read-only, serve.lock held)")
        storage = ScyllaStorage(
            None, **options.target, max_in_flight=max(16, options.concurrency * 16)
        )
        try:
            await storage.open()
        except ChatdError as exc:
            raise MigrateError(f"cannot open the target keyspace: {exc.message}") from exc
        try:
            importer = Importer(storage, batch_rows=options.batch_size)
            await importer.open()
            copied = False
            progress = await importer.progress()
            meta = progress.get("meta")
            complete = meta is not None and meta[1]
            if options.verify_only and not complete:
                raise MigrateError("the copy is not complete: run without --verify-only first")
            if not complete:
                fingerprint = await source.run(source.fingerprint)
                info = {"fingerprint": fingerprint, "source": str(source.path)}
                if meta is None:
                    if await importer.used_by_chatd():
                        raise MigrateError(
                            f"keyspace {options.target['keyspace']} already holds chatd data "
                            "that did not come from this migration: migrate into a new keyspace"
                        )
                    await importer.save("meta", None, False, info)
                elif (meta[2] or {}).get("fingerprint") != fingerprint:
                    raise MigrateError(
                        "the source changed since the interrupted migration into "
                        f"{options.target['keyspace']} (or is another database): drop that "
                        "keyspace (DROP KEYSPACE in cqlsh) and run the migration again"
                    )
                else:
                    reporter.note("resuming the interrupted migration")
                await _copy(source, importer, progress, options, reporter)
                await storage.keys.fill_sets(again=True)  # derived from the copied bundles
                await importer.save("meta", None, True, info)
                copied = True
            else:
                reporter.note("the copy is complete (checkpoint): verifying only")
            report = await verify(source, importer, options.concurrency, reporter)
            return Outcome(copied, report)
        finally:
            await storage.aclose()
    except SourceError as exc:
        raise MigrateError(str(exc)) from exc
    finally:
        await source.close()


async def _copy(
    source: SqliteSource,
    importer: Importer,
    progress: dict[str, tuple[Any, bool, Any]],
    options: Options,
    reporter: Reporter,
) -> None:
    from chatd.migrate.steps import STEPS, EpochCache

    totals = await source.run(source.counts)
    epochs = EpochCache(source)
    for step in STEPS:
        position, done, _ = progress.get(step.name, (None, False, None))
        total = totals[step.table]
        if done:
            reporter.step(step.name, total, total)
            reporter.finish(step.name)
            continue
        before = await source.run(source.done_before, step.name, position)
        reporter.step(step.name, total, before)
        await _run_step(step, position, source, importer, epochs, options, reporter)
        reporter.finish(step.name)


async def _run_step(
    step: Step,
    position: list[Any] | None,
    source: SqliteSource,
    importer: Importer,
    epochs: EpochCache,
    options: Options,
    reporter: Reporter,
) -> None:
    """Pages in key order, ``concurrency`` in flight; the checkpoint follows the
    longest prefix of finished pages."""
    from chatd.migrate.steps import puts_for

    inflight: deque[tuple[list[Any], int, asyncio.Task[None]]] = deque()
    saved_at = time.monotonic()

    async def settle(wait_all: bool) -> None:
        nonlocal saved_at
        while inflight and (wait_all or inflight[0][2].done() or len(inflight) >= limit):
            end, count, task = inflight.popleft()
            await task  # raises the page's failure: the checkpoint stays before it
            reporter.advance(step.name, count)
            if time.monotonic() - saved_at >= CHECKPOINT_S:
                await importer.save(step.name, end)
                saved_at = time.monotonic()

    limit = max(1, options.concurrency)
    try:
        while True:
            page = await source.run(step.read, source, position, options.batch_size)
            if not page:
                break
            puts = await puts_for(step, page, epochs)
            position = step.key(page[-1])
            inflight.append((position, len(page), asyncio.create_task(importer.write(puts))))
            await settle(wait_all=False)
        await settle(wait_all=True)
    except BaseException:
        for _, _, task in inflight:
            task.cancel()
        await asyncio.gather(*(t for _, _, t in inflight), return_exceptions=True)
        raise
    await importer.save(step.name, position, True)
