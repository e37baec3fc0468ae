"""Message delivery while a large upload streams and thumbnails are made.

Three processes, as in real life: a ``chatd serve`` child, an uploader child
(carol sends a 48 MiB file and two 12-megapixel photos taken sideways, which
the server decodes whole, rotates, re-encodes and thumbnails), and this test,
which sends small messages from alice to bob before and during that load. It
asserts that every message and upload got through and that messages kept
arriving while the uploads were in flight; it asserts no time (machines vary)
but prints the delivery times of both phases for docs/benchmarks.md:

    .venv/bin/pytest -s tests/features/test_media_latency.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests import media_files as mf
from tests.conftest import PASSWORD

BIG_UPLOAD = 48 * 1024 * 1024

UPLOADER = """
import asyncio, json, sys
from chatd.client import ChatdClient

async def big_body(size):
    yield b"%PDF-1.4\\n"
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        yield block

async def main(url, password, photo_path, size):
    client = ChatdClient(url)
    await client.login("carol", password)
    photo = open(photo_path, "rb").read()
    print("ready", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(
        client.upload_media(big_body(size), "application/pdf"),
        client.upload_media(photo, "image/jpeg"),
        client.upload_media(photo + b"\\0", "image/jpeg"),
    )
    await client.aclose()
    print(json.dumps(results), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def _photo(path: Path) -> None:
    """A 12-megapixel phone photo taken sideways (EXIF orientation 6)."""
    noise = Image.effect_noise((4000, 3000), 40).convert("RGB")
    path.write_bytes(mf.encode(noise, "JPEG", quality=85, exif=mf.exif(orientation=6)))


async def _pings(alice_ws, bob_ws, chat_id: str, until, minimum: int) -> tuple[list[float], int]:
    """Delivery latencies in ms, one message at a time, until ``until()`` and ``minimum`` sent;
    and how many were delivered before ``until()`` turned true."""
    latencies: list[float] = []
    before_until = 0
    while len(latencies) < minimum or not until():
        started = time.perf_counter()
        sent = await alice_ws.send_message(chat_id=chat_id, content=f"ping {len(latencies)}")
        got = await bob_ws.next_event("new_message", timeout=30)
        assert got["data"]["message_id"] == sent["message_id"]
        latencies.append((time.perf_counter() - started) * 1000)
        before_until += not until()
        await asyncio.sleep(0.01)
    return latencies, before_until


def _summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"n={len(ordered)} p50={statistics.median(ordered):.1f}ms "
        f"p95={p95:.1f}ms max={ordered[-1]:.1f}ms"
    )


@pytest.mark.sqlite_only  # the figures in docs/benchmarks.md are for the default store
async def test_messages_keep_flowing_during_a_large_upload_and_thumbnails(
    tmp_path, chatd_process, process_user
):
    photo = tmp_path / "photo.jpg"
    await asyncio.to_thread(_photo, photo)
    server = chatd_process
    uploader = None
    try:
        alice, bob, carol = [await process_user(n) for n in ("alice", "bob", "carol")]
        chat = await alice.open_direct(bob.user_id)
        await carol.upload_media(mf.png(), "image/png")  # the worker processes are started
        uploader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UPLOADER,
            server.url,
            PASSWORD,
            str(photo),
            str(BIG_UPLOAD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert uploader.stdin is not None and uploader.stdout is not None
        assert (await asyncio.wait_for(uploader.stdout.readline(), 30)).strip() == b"ready"
        async with alice.connect() as a_ws, bob.connect() as b_ws:
            idle, _ = await _pings(a_ws, b_ws, chat["chat_id"], lambda: True, 100)
            started = time.perf_counter()
            uploader.stdin.write(b"go\n")
            await uploader.stdin.drain()
            answer = asyncio.create_task(uploader.stdout.readline())
            loaded, during = await _pings(a_ws, b_ws, chat["chat_id"], answer.done, 20)
            load_s = time.perf_counter() - started
        # Delivered one by one while the uploads were still being received and processed.
        assert during >= 1, "no message got through until the uploads were done"
        big, first, second = json.loads(await answer)
        assert big["size"] == BIG_UPLOAD + 9 and big["mime_type"] == "application/pdf"
        for rotated in (first, second):
            assert (rotated["width"], rotated["height"]) == (3000, 4000)
            assert rotated["thumbnail_url"] is not None
        print(
            f"\ndelivery, idle:   {_summary(idle)}"
            f"\ndelivery, loaded: {_summary(loaded)} "
            f"(48 MiB upload + two 12 MP photos rotated and thumbnailed, {load_s:.2f} s)"
        )
    finally:
        if uploader is not None and uploader.returncode is None:
            uploader.kill()
            await uploader.wait()
