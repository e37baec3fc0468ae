"""``MediaProcessor`` over a process pool: Pillow and PyAV never run on the event loop.

Decoding a large image or a video frame holds the GIL for long stretches, so
it runs in separate processes (``[media] workers``), started by a fork server
that has already imported the decoders. A worker that crashes on a hostile file
breaks the pool: it is replaced and that upload is refused, nothing else. Each
worker's address space is capped (``[media] worker_memory_mb``, RLIMIT_AS), so a
file that makes a decoder allocate gigabytes fails there (``payload_too_large``)
instead of taking the machine's memory. Sniffing reads only the first 8 KiB, in
a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from chatd.core.errors import ChatdError
from chatd.core.ports.media import Processed
from chatd.media import sniff

log = logging.getLogger(__name__)
THUMBNAIL_PX = 320
#: A worker process is replaced after this many files (bounds decoder leaks).
TASKS_PER_WORKER = 500
WORKER_NICENESS = 10
_PROBED = ("image/", "video/", "audio/")


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["chatd.media.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


def _start_worker(lifeline: Any, memory_bytes: int) -> None:
    """Worker initializer: cap its memory, yield the CPU to the server, leave when it is gone.

    A worker runs at a lower priority (nice +10), so on a busy machine the
    scheduler favours the server's event loop over a thumbnail. ``lifeline`` is
    the read end of a pipe whose only write end the server holds; the kernel
    closes it when the server dies, even by SIGKILL, and the read returns.
    Without it an orphaned worker would wait for work forever. ``memory_bytes``
    caps the worker's address space: past it an allocation fails (MemoryError
    in Python, ENOMEM in FFmpeg) and that file is refused.
    """
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    if memory_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            memory_bytes = min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(0)

    threading.Thread(target=wait, name="chatd-lifeline", daemon=True).start()


def _ready() -> None:
    """A task that only proves a worker is up."""


def _run(
    path: str, mime_type: str, thumbnail_format: str, px: int, max_duration_s: float
) -> dict[str, Any]:
    """In a worker process: the decoders are imported there, never in the server."""
    from chatd.media import worker

    return worker.process(path, mime_type, thumbnail_format, px, max_duration_s)


def _read_head(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read(sniff.HEAD_BYTES)


class PoolProcessor:
    def __init__(
        self,
        *,
        workers: int = 2,
        thumbnail_format: str = "jpeg",
        thumbnail_px: int = THUMBNAIL_PX,
        memory_bytes: int = 2048 << 20,
        max_duration_s: float = 12 * 3600,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self._workers = workers
        self._memory_bytes = memory_bytes
        self._max_duration_s = max_duration_s
        self._format = thumbnail_format
        self._px = thumbnail_px
        self._observe = observe or (lambda what, seconds: None)
        self._pool: ProcessPoolExecutor | None = None
        self._context: Any = None
        self._lifeline: tuple[Any, Any] | None = None
        self._starting = asyncio.Lock()

    async def open(self) -> None:
        """Ready to start workers; they start on the first file (most runs never need them)."""
        self._context = _context()
        self._lifeline = self._context.Pipe(duplex=False)

    async def _started(self) -> ProcessPoolExecutor:
        async with self._starting:
            if self._pool is None:
                if self._lifeline is None:
                    raise ChatdError("unavailable", "media processing is not running")
                self._pool = await asyncio.to_thread(self._new_pool)
            return self._pool

    def _new_pool(self) -> ProcessPoolExecutor:
        """A pool with every worker started (blocking: called in a thread).

        The executor starts a worker inside ``submit`` when none is idle, and a
        start (a fork, then the child's imports) in the event loop would stall it
        for tens of milliseconds or more; started here, ``submit`` never has to.
        """
        assert self._lifeline is not None
        pool = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=self._context,
            max_tasks_per_child=TASKS_PER_WORKER,
            initializer=_start_worker,
            initargs=(self._lifeline[0], self._memory_bytes),
        )
        for ready in [pool.submit(_ready) for _ in range(self._workers)]:
            ready.result()
        return pool

    async def aclose(self) -> None:
        async with self._starting:  # not while a pool is being started
            pool, self._pool = self._pool, None
            lifeline, self._lifeline = self._lifeline, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        for end in lifeline or ():
            end.close()

    async def sniff(self, path: str, declared: str | None) -> str:
        return sniff.detect(await asyncio.to_thread(_read_head, path), declared)

    async def process(self, path: str, mime_type: str) -> Processed:
        if not mime_type.startswith(_PROBED):
            return Processed(mime_type)
        pool = self._pool or await self._started()
        loop = asyncio.get_running_loop()
        try:
            result: dict[str, Any] = await loop.run_in_executor(
                pool, _run, path, mime_type, self._format, self._px, self._max_duration_s
            )
        except BrokenProcessPool:
            log.error("a media worker died processing a %s file; pool replaced", mime_type)
            if self._pool is pool:
                self._pool = None  # the next file starts a new pool
                pool.shutdown(wait=False, cancel_futures=True)
            _remove_outputs(path)
            raise ChatdError("unsupported_media_type", "this file could not be processed") from None
        if "error" in result:
            _remove_outputs(path)
            if result.get("code") == "payload_too_large":
                raise ChatdError("payload_too_large", result["error"])
            if result.get("code") == "unavailable":
                raise ChatdError("unavailable", result["error"])
            raise ChatdError("unsupported_media_type", result["error"])
        if "thumbnail_seconds" in result:
            self._observe("thumbnail", result.pop("thumbnail_seconds"))
        return Processed(**result)


def _remove_outputs(path: str) -> None:
    for suffix in (".thumb", ".clean"):
        Path(path + suffix).unlink(missing_ok=True)
