"""One account against the media pipeline: decompression bombs, floods, quotas, a full disk.

Each test runs the attack for a bounded time on loopback and checks the refusal
and that the server keeps serving everyone else (health and a message between
two other users).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatd.client import ApiError
from tests import media_files as mf
from tests.abuse_checks import health, still_serving

PDF_HEAD = b"%PDF-1.4\n"


def pdf(size: int, seed: int = 0) -> bytes:
    body = bytes((seed + i) % 251 for i in range(size - len(PDF_HEAD)))
    return PDF_HEAD + body


async def refusal(client, data: bytes, content_type: str = "application/pdf") -> ApiError:
    with pytest.raises(ApiError) as err:
        await client.upload_media(data, content_type)
    return err.value


# -- item 3: a small video declaring a huge frame ---------------------------------------


async def test_a_video_declaring_a_huge_frame_is_refused_before_decoding(user, base_url):
    """2 MB that decode to a 16,000 x 16,000 frame (3.5 GB and 17 s if decoded)."""
    bomb = mf.mjpeg_mp4(16_000, 16_000)
    attackers = [await user() for _ in range(3)]
    other = await user()
    started = time.monotonic()
    attacks = [asyncio.create_task(refusal(a, bomb, "video/mp4")) for a in attackers]
    await asyncio.sleep(0.05)
    await still_serving(user, base_url)  # while the uploads are being judged
    png = await other.upload_media(mf.png(), "image/png")
    assert png["width"] == 400
    for attack in attacks:
        error = await attack
        assert error.code == "payload_too_large"
        assert "pixels" in error.message
    assert time.monotonic() - started < 10
    await still_serving(user, base_url)


@pytest.mark.parametrize("config_overrides", [{"media": {"worker_memory_mb": 256}}])
async def test_a_decoder_over_the_worker_memory_cap_is_refused(user, base_url):
    """12,000 x 12,000 is under the pixel budget; decoding it needs more than 256 MiB."""
    alice = await user()
    error = await refusal(alice, mf.mjpeg_mp4(12_000, 12_000), "video/mp4")
    assert error.code == "payload_too_large" and "memory" in error.message
    video = await alice.upload_media(mf.mp4_video(), "video/mp4")  # the pool still works
    assert (video["width"], video["height"]) == (160, 120)
    await still_serving(user, base_url)


@pytest.mark.parametrize("config_overrides", [{"media": {"max_duration_s": 1.0}}])
async def test_video_and_sound_longer_than_the_limit_are_refused(user):
    alice = await user()
    assert (await refusal(alice, mf.mp4_video(frames=20), "video/mp4")).code == "payload_too_large"
    assert (await refusal(alice, mf.audio("mp3", 1.5), "audio/mpeg")).code == "payload_too_large"
    short = await alice.upload_media(mf.audio("mp3", 0.5), "audio/mpeg")
    assert short["mime_type"] == "audio/mpeg"


# -- item 3: how many uploads, how often -------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"limits": {"concurrent_uploads_per_user": 1}}])
async def test_one_user_streams_a_bounded_number_of_uploads_at_once(user, base_url):
    alice = await user()
    release = asyncio.Event()

    async def slow_body():
        yield PDF_HEAD
        await release.wait()
        yield bytes(5000)

    first = asyncio.create_task(alice.upload_media(slow_body(), "application/pdf"))
    await asyncio.sleep(0.2)
    error = await refusal(alice, pdf(2000))
    assert error.code == "rate_limited" and error.retry_after is not None
    bob = await user()  # others are not affected
    assert (await bob.upload_media(pdf(2000), "application/pdf"))["size"] == 2000
    release.set()
    assert (await first)["size"] == len(PDF_HEAD) + 5000
    assert (await alice.upload_media(pdf(2000), "application/pdf"))["size"] == 2000
    await still_serving(user, base_url)


@pytest.mark.parametrize("config_overrides", [{"limits": {"uploads_per_minute": 3}}])
async def test_uploads_per_minute_are_limited_per_user(user, base_url):
    alice, bob = await user(), await user()
    for seed in range(3):
        await alice.upload_media(pdf(1000, seed), "application/pdf")
    error = await refusal(alice, pdf(1000, 9))
    assert error.code == "rate_limited" and error.retry_after and error.retry_after >= 1
    await bob.upload_media(pdf(1000, 9), "application/pdf")
    await still_serving(user, base_url)


# -- item 7: disk quotas -----------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"limits": {"unsent_upload_bytes": 50_000}}])
async def test_unsent_uploads_are_limited_per_user_until_sent(user):
    alice, bob = await user(), await user()
    first = await alice.upload_media(pdf(30_000, 1), "application/pdf")
    error = await refusal(alice, pdf(30_000, 2))
    assert error.code == "payload_too_large" and "no message carries" in error.message
    await bob.upload_media(pdf(30_000, 2), "application/pdf")  # per user
    await alice.send_message(
        recipient_id=bob.user_id, type="file", content="doc", media_id=first["media_id"]
    )
    await alice.upload_media(pdf(30_000, 2), "application/pdf")  # the first one is sent


@pytest.mark.parametrize("config_overrides", [{"limits": {"upload_bytes_per_day": 70_000}}])
async def test_bytes_uploaded_per_day_are_limited_per_user(user):
    alice, bob = await user(), await user()
    for seed in range(2):
        media = await alice.upload_media(pdf(30_000, seed), "application/pdf")
        await alice.send_message(
            recipient_id=bob.user_id, type="file", content="doc", media_id=media["media_id"]
        )
    error = await refusal(alice, pdf(30_000, 5))  # sent or not, the day's total counts
    assert error.code == "payload_too_large" and "24 hours" in error.message
    await bob.upload_media(pdf(30_000, 5), "application/pdf")


# -- item 7: a full disk -------------------------------------------------------------------


def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` (needs root; the test is skipped otherwise)."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_media_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs where the server keeps media."""
    yield from small_tmpfs(tmp_path / "data" / "media", "2m")


async def test_a_full_disk_refuses_uploads_and_turns_health_unavailable(
    small_media_disk, user, base_url
):
    alice, bob = await user(), await user()
    kept = await alice.upload_media(pdf(1_200_000, 1), "application/pdf")
    error = await refusal(bob, pdf(1_200_000, 2))  # no room for a second copy
    assert error.code == "unavailable"
    status, body, _ = await health(base_url)
    assert status == 503
    assert body["status"] == "unavailable" and "space" in body["reason"]
    staged = [p.name for p in (small_media_disk / "tmp").rglob("*") if p.is_file()]
    assert staged == []  # nothing half-written
    # Messages still flow, and what was stored is still served.
    assert await alice.download_media(kept["media_id"]) == pdf(1_200_000, 1)
    await alice.send_message(recipient_id=bob.user_id, content="the disk is full")

    # An operator frees space: health recovers by itself, uploads work again.
    for blob in (small_media_disk / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    deadline = time.monotonic() + 5
    while (await health(base_url))[0] != 200:
        assert time.monotonic() < deadline, "health did not recover"
        await asyncio.sleep(0.2)
    assert (await bob.upload_media(pdf(1_200_000, 2), "application/pdf"))["size"] == 1_200_000
    await still_serving(user, base_url)


@pytest.fixture
def small_data_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs as the whole data directory, with a 3 MiB file taking half of it;
    the test frees space by deleting the filler."""
    for folder in small_tmpfs(tmp_path / "data", "6m"):
        (folder / "filler").write_bytes(b"\0" * (3 << 20))
        yield folder


@pytest.mark.sqlite_only  # the SQLite file itself runs out of room
async def test_a_full_disk_under_sqlite_turns_health_unavailable_until_space_is_freed(
    small_data_disk, user, base_url
):
    alice, bob = await user(), await user()
    body = "x" * 60_000
    for i in range(200):  # at most ~12 MB: the disk fills long before
        try:
            await alice.send_message(recipient_id=bob.user_id, content=f"{i} {body}")
        except ApiError as exc:
            assert (exc.status, exc.code) == (503, "unavailable")
            break
    else:
        pytest.fail("the disk never filled")
    status, reply, _ = await health(base_url)
    assert status == 503 and reply["status"] == "unavailable" and reply["reason"], reply
    stored = (await bob.messages((await alice.chats())[0]["chat_id"], limit=1))["messages"]
    assert stored and stored[0]["content"].startswith(f"{i - 1} ")  # nothing acked was lost

    (small_data_disk / "filler").unlink()  # an operator frees space
    deadline = time.monotonic() + 10
    while (await health(base_url))[0] != 200:
        assert time.monotonic() < deadline, "health did not recover"
        await asyncio.sleep(0.2)
    sent = await alice.send_message(recipient_id=bob.user_id, content="room again")
    assert sent["seq"] == i + 1  # seqs go on without a gap
