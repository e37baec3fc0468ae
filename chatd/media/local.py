"""The default blob store: files under ``<data_dir>/media``, named by their SHA-256.

``blobs/ab/cd/<sha256>`` holds published bytes; ``tmp/`` holds staged uploads
and the files the processor makes beside them. A blob is written to ``tmp/``,
fsynced, then renamed onto its name and the folder fsynced, so a crash never
leaves a partial file under a blob name; leftovers in ``tmp/`` are removed when
the store opens. File work runs in threads, never on the event loop.

A write that fails for lack of space (ENOSPC, EDQUOT) refuses that upload with
``unavailable`` and is remembered: ``writable`` then reports it to ``/health``
until a small probe write succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from chatd.core.errors import ChatdError, not_found
from chatd.core.ports.media import StagedBlob
from chatd.plugins import PluginContext, read_settings

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Upload bytes are handed to the writing thread in pieces of about this size.
WRITE_BATCH = 1 << 20
#: A large upload is written back to disk every this many bytes rather than in
#: one burst at the end, which would stall other fsyncs (SQLite's commits) on
#: the same file system for as long as it takes.
SYNC_EVERY = 4 << 20
READ_CHUNK = 256 * 1024
#: Errors that mean "no room", not "bad file": the disk or the user's quota is full.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: While writes fail, ``writable`` probes with a write of this size, at most this often.
PROBE_BYTES = 64 * 1024
PROBE_EVERY_S = 1.0


@dataclass(frozen=True)
class LocalSettings:
    """``[media.local]``."""

    #: Where blobs live; empty: ``<data_dir>/media``. In a cluster, a directory
    #: every node mounts (NFS, CephFS...), so any node serves any upload.
    root: str = ""

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PluginContext) -> LocalSettings:
        return read_settings(cls, table, context)


def create(settings: Mapping[str, Any], context: PluginContext) -> LocalBlobStore:
    """The ``chatd.media`` entry point ``local``: blobs under ``[media.local] root``
    (default ``<data_dir>/media``)."""
    root = LocalSettings.read(settings, context).root
    return LocalBlobStore(
        Path(root).expanduser() if root else context.data_dir / "media", context.node_id
    )


class LocalBlobStore:
    """Blobs named by content under ``root/blobs``; uploads staged in this node's own
    ``root/tmp/<node_id>`` (a node cleaning up after a crash never touches another
    node's uploads in flight when several nodes share ``root``)."""

    def __init__(self, root: Path, node_id: str = "node") -> None:
        self.root = root
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp" / node_id
        self._failure: str | None = None
        self._probed_at = 0.0

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        if self.tmp.exists():  # staged files of a run that crashed or was killed
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        return None

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise not_found("no such blob")
        return self.blobs / sha256[:2] / sha256[2:4] / sha256

    # -- staging -------------------------------------------------------------------

    async def stage(self, chunks: AsyncIterable[bytes], limit: int) -> StagedBlob:
        with self._space_checked():
            return await self._stage(chunks, limit)

    async def _stage(self, chunks: AsyncIterable[bytes], limit: int) -> StagedBlob:
        path = self.tmp / f"{secrets.token_hex(16)}.part"
        digest = hashlib.sha256()
        file = await asyncio.to_thread(path.open, "xb")
        size = 0
        pending: list[bytes] = []
        pending_bytes = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ChatdError("payload_too_large", f"uploads are limited to {limit} bytes")
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= WRITE_BATCH:
                    flush = size // SYNC_EVERY != (size - pending_bytes) // SYNC_EVERY
                    await asyncio.to_thread(_write, file, digest, pending, flush)
                    pending, pending_bytes = [], 0
            await asyncio.to_thread(_finish, file, digest, pending)
        except BaseException:
            await asyncio.to_thread(_abandon, file, path)
            raise
        return StagedBlob(str(path), digest.hexdigest(), size)

    async def adopt(self, path: str) -> StagedBlob:
        with self._space_checked():
            return await asyncio.to_thread(self._adopt, Path(path))

    def _adopt(self, path: Path) -> StagedBlob:
        if path.parent.resolve() != self.tmp.resolve():
            target = self.tmp / f"{secrets.token_hex(16)}.part"
            shutil.move(path, target)
            path = target
        digest = hashlib.sha256()
        with path.open("rb+") as file:
            while block := file.read(WRITE_BATCH):
                digest.update(block)
            os.fsync(file.fileno())
        return StagedBlob(str(path), digest.hexdigest(), path.stat().st_size)

    async def publish(self, staged: StagedBlob) -> None:
        with self._space_checked():
            await asyncio.to_thread(self._publish, staged)

    def _publish(self, staged: StagedBlob) -> None:
        target = self.path(staged.sha256)
        source = Path(staged.path)
        if target.exists():  # the same bytes are stored once
            source.unlink(missing_ok=True)
            return
        new_folders = not target.parent.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)  # atomic: the name appears with every byte
        _fsync_dir(target.parent)
        if new_folders:
            _fsync_dir(target.parent.parent)
            _fsync_dir(self.blobs)

    async def discard(self, staged: StagedBlob) -> None:
        await asyncio.to_thread(Path(staged.path).unlink, missing_ok=True)

    # -- a full disk ---------------------------------------------------------------

    @contextlib.contextmanager
    def _space_checked(self) -> Iterator[None]:
        """A write failing for lack of space: remembered, and ``unavailable`` (not a 500)."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            self._failure = f"media writes fail: {os.strerror(exc.errno or 0)}"
            self._probed_at = time.monotonic()
            log.error("media store write failed: %s", exc)
            raise ChatdError("unavailable", "the server's disk is full; retry later") from None

    async def writable(self) -> str | None:
        if self._failure is None:
            return None
        now = time.monotonic()
        if now - self._probed_at < PROBE_EVERY_S:
            return self._failure
        self._probed_at = now
        try:
            await asyncio.to_thread(self._probe)
        except OSError as exc:
            self._failure = f"media writes fail: {os.strerror(exc.errno or 0)}"
            return self._failure
        log.warning("media store writes succeed again")
        self._failure = None
        return None

    def _probe(self) -> None:
        path = self.tmp / f"{secrets.token_hex(8)}.probe"
        try:
            with path.open("xb") as file:
                file.write(bytes(PROBE_BYTES))
                file.flush()
                os.fsync(file.fileno())
        finally:
            path.unlink(missing_ok=True)

    # -- reading and deleting ------------------------------------------------------

    async def exists(self, sha256: str) -> bool:
        try:
            return await asyncio.to_thread(self.path(sha256).is_file)
        except ChatdError:
            return False

    async def read(self, sha256: str, offset: int, length: int) -> AsyncIterator[bytes]:
        path = self.path(sha256)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise not_found("the file of this media is gone") from None
        try:
            await asyncio.to_thread(file.seek, offset)
            left = length
            while left > 0:
                block = await asyncio.to_thread(file.read, min(READ_CHUNK, left))
                if not block:
                    break
                left -= len(block)
                yield block
        finally:
            await asyncio.to_thread(file.close)

    async def delete(self, sha256: str) -> bool:
        path = self.path(sha256)

        def unlink() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(unlink)


def _write(file: BinaryIO, digest: Any, blocks: list[bytes], sync: bool = False) -> None:
    for block in blocks:
        digest.update(block)
        file.write(block)
    if sync:  # write back as we go: the final fsync then has little left to flush
        file.flush()
        os.fdatasync(file.fileno())


def _finish(file: BinaryIO, digest: Any, blocks: list[bytes]) -> None:
    _write(file, digest, blocks)
    file.flush()
    os.fsync(file.fileno())
    file.close()


def _abandon(file: BinaryIO, path: Path) -> None:
    with contextlib.suppress(OSError):
        file.close()
    path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
