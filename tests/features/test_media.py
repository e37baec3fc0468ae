"""Media over the wire: uploads, type sniffing, limits, dedup, access, messages, retention."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from chatd.client import ApiError
from chatd.core.ids import now_ms
from tests import media_files as mf

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + os.urandom(3000) + b"\n%%EOF\n"


def blob_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "media" / "blobs").rglob("*") if p.is_file()]


def staged_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "media" / "tmp").rglob("*") if p.is_file()]


async def upload_error(client, data, content_type="application/octet-stream", **kwargs) -> str:
    with pytest.raises(ApiError) as err:
        await client.upload_media(data, content_type, **kwargs)
    return err.value.code


SAMPLES = {
    "png": (mf.png, "image/png"),
    "gif": (mf.gif, "image/gif"),
    "webp": (mf.webp, "image/webp"),
    "pdf": (lambda: PDF, "application/pdf"),
    "text": (lambda: "héllo, wörld\n".encode() * 50, "text/plain"),
    "mp4": (mf.mp4_video, "video/mp4"),
    "webm": (mf.webm_video, "video/webm"),
    "mp3": (lambda: mf.audio("mp3"), "audio/mpeg"),
    "m4a": (lambda: mf.audio("m4a"), "audio/mp4"),
    "ogg": (lambda: mf.audio("ogg"), "audio/ogg"),
    "wav": (lambda: mf.audio("wav"), "audio/wav"),
}


async def test_round_trip_is_byte_exact(user):
    alice = await user()
    for kind, (make, mime) in SAMPLES.items():
        data = make()
        media = await alice.upload_media(data, "application/octet-stream")
        assert media["mime_type"] == mime, kind
        assert media["size"] == len(data), kind
        assert media["sha256"] == hashlib.sha256(data).hexdigest(), kind
        assert media["url"] == f"/api/v1/media/{media['media_id']}"
        assert await alice.download_media(media["media_id"]) == data, kind


async def test_multipart_upload_keeps_the_file_name(user):
    alice = await user()
    media = await alice.upload_media(
        PDF, "application/pdf", filename="Q3 report.pdf", multipart=True
    )
    assert media["mime_type"] == "application/pdf" and media["filename"] == "Q3 report.pdf"
    assert media["thumbnail_url"] is None and media["width"] is None
    assert await alice.download_media(media["media_id"]) == PDF


async def test_a_multipart_body_without_a_file_part_is_refused(user):
    import aiohttp

    alice = await user()
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.bin")
    with pytest.raises(ApiError) as err:
        await alice.request("POST", "/media", data=form)
    assert err.value.code == "bad_request"


async def test_the_type_comes_from_the_bytes_not_the_label(user):
    alice = await user()
    png = await alice.upload_media(mf.png(), "text/plain")
    assert png["mime_type"] == "image/png" and png["width"] == 400
    csv = await alice.upload_media(b"a,b\n1,2\n", "text/csv; charset=utf-8")
    assert csv["mime_type"] == "text/csv"
    text = await alice.upload_media(b"just words\n", "image/jpeg")
    assert text["mime_type"] == "text/plain"
    audio_only = await alice.upload_media(mf.audio("mp4"), "video/mp4")
    assert audio_only["mime_type"] == "audio/mp4" and audio_only["thumbnail_url"] is None


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (mf.elf_executable(), "image/jpeg"),
        (b"MZ\x90\x00\x03" + bytes(400), "image/png"),  # a Windows executable
        (b"#!/bin/sh\nrm -rf ~\n", "text/plain"),
        (b"<!DOCTYPE html><script>alert(1)</script>", "text/plain"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "image/png"),
        (b"console.log(1)\n", "text/javascript"),
        (os.urandom(2000), "image/jpeg"),  # unknown binary
    ],
    ids=["elf", "exe", "script", "html", "svg", "javascript", "unknown-binary"],
)
async def test_executables_scripts_and_unknown_binaries_are_refused(user, tmp_path, data, label):
    alice = await user()
    assert await upload_error(alice, data, label) == "unsupported_media_type"
    assert blob_files(tmp_path) == [] and staged_files(tmp_path) == []


async def test_a_file_named_as_a_program_is_refused(user, tmp_path):
    alice = await user()
    for name in ("run.bat", "setup.EXE", "install.sh", "tool.ps1"):
        code = await upload_error(alice, b"echo hi\n", "text/plain", filename=name)
        assert code == "unsupported_media_type", name
    assert await upload_error(alice, mf.png(), filename="photo.png.js") == "unsupported_media_type"
    ok = await alice.upload_media(b"echo hi\n", "text/plain", filename="notes.txt")
    assert ok["mime_type"] == "text/plain"
    assert staged_files(tmp_path) == []


async def test_a_file_that_does_not_decode_as_its_type_is_refused(user, tmp_path):
    alice = await user()
    broken_png = mf.png()[:60] + os.urandom(200)
    assert await upload_error(alice, broken_png, "image/png") == "unsupported_media_type"
    broken_video = mf.mp4_video()[:40] + bytes(500)
    assert await upload_error(alice, broken_video, "video/mp4") == "unsupported_media_type"
    assert blob_files(tmp_path) == [] and staged_files(tmp_path) == []


@pytest.mark.parametrize("config_overrides", [{"limits": {"max_upload_bytes": 100_000}}])
async def test_the_upload_limit_is_enforced_while_streaming(user, tmp_path):
    alice = await user()
    exact = b"%PDF-1.4\n" + bytes(100_000 - 9)
    assert (await alice.upload_media(exact, "application/pdf"))["size"] == 100_000
    assert await upload_error(alice, exact + b"x", "application/pdf") == "payload_too_large"

    async def stream(total: int, step: int = 8192):  # chunked: no Content-Length to go by
        yield b"%PDF-1.4\n"
        sent = 9
        while sent < total:
            yield bytes(min(step, total - sent))
            sent += step
            await asyncio.sleep(0)

    assert await upload_error(alice, stream(5_000_000), "application/pdf") == "payload_too_large"
    assert await upload_error(alice, stream(100_001), multipart=True) == "payload_too_large"
    assert len(blob_files(tmp_path)) == 1 and staged_files(tmp_path) == []
    assert (await alice.me())["user_id"] == alice.user_id  # the server is fine


async def test_identical_uploads_are_stored_once(user, tmp_path):
    alice, bob = await user(), await user()
    data = mf.png(300, 200)
    first = await alice.upload_media(data, "image/png")
    second = await alice.upload_media(data, "image/png")
    third = await bob.upload_media(data, "image/png")
    assert len({first["media_id"], second["media_id"], third["media_id"]}) == 3
    assert first["sha256"] == second["sha256"] == third["sha256"]
    assert len(blob_files(tmp_path)) == 2  # the file and its thumbnail, once
    assert await bob.download_media(third["media_id"]) == data


async def test_only_the_uploader_and_readers_of_a_message_can_read_it(user):
    alice, bob, carol = await user(), await user(), await user()
    media = await alice.upload_media(mf.png(), "image/png")
    media_id = media["media_id"]
    for stranger in (bob, carol):
        for thumbnail in (False, True):
            with pytest.raises(ApiError) as err:
                await stranger.download_media(media_id, thumbnail=thumbnail)
            assert err.value.code == "not_found"

    await alice.send_message(recipient_id=bob.user_id, type="image", media_id=media_id)
    assert await bob.download_media(media_id) == await alice.download_media(media_id)
    assert (await bob.download_media(media_id, thumbnail=True)).startswith(b"\xff\xd8")
    with pytest.raises(ApiError) as err:
        await carol.download_media(media_id)
    assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        await alice.download_media("no-such-media")
    assert err.value.code == "not_found"


async def test_group_members_read_what_they_could_see(user):
    alice, bob, carol, dave = [await user() for _ in range(4)]
    group = await alice.create_group("g", [bob.user_id, carol.user_id])
    gid = group["group_id"]
    media = await alice.upload_media(mf.gif(), "image/gif")
    await alice.send_message(chat_id=gid, type="image", media_id=media["media_id"])
    await alice.remove_member(gid, carol.user_id)
    await alice.add_members(gid, [dave.user_id])
    assert await bob.download_media(media["media_id"]) == mf.gif()
    assert await carol.download_media(media["media_id"]) == mf.gif()  # saw it before leaving
    with pytest.raises(ApiError) as err:  # joined after it was sent: never saw it
        await dave.download_media(media["media_id"])
    assert err.value.code == "not_found"


async def test_a_media_message_is_delivered_and_synced_with_its_media(user, device):
    alice, bob = await user(), await user()
    media = await alice.upload_media(mf.jpeg(640, 480), "image/jpeg", filename="cat.jpg")
    expected = {
        "media_id": media["media_id"],
        "url": f"/api/v1/media/{media['media_id']}",
        "thumbnail_url": f"/api/v1/media/{media['media_id']}/thumbnail",
        "mime_type": "image/jpeg",
        "size": media["size"],
        "width": 640,
        "height": 480,
        "duration_ms": None,
        "filename": "cat.jpg",
    }
    async with bob.connect() as b_ws:
        async with alice.connect() as a_ws:
            ack = await a_ws.send_message(
                recipient_id=bob.user_id, type="image", content="look", media_id=media["media_id"]
            )
        live = (await b_ws.next_event("new_message"))["data"]
    assert live["message_id"] == ack["message_id"] and live["type"] == "image"
    assert live["media"] == expected
    page = await bob.messages(ack["chat_id"])
    assert page["messages"][0]["media"] == expected
    synced = await bob.messages(ack["chat_id"], after_seq=0)
    assert synced["messages"][0]["media"] == expected
    assert (await bob.chats())[0]["last_message"]["media"] == expected

    bob_tablet = await device(bob)  # a new device gets the history replayed
    async with bob_tablet.connect() as tablet:
        replayed = (await tablet.next_event("new_message"))["data"]
    assert replayed["message_id"] == ack["message_id"] and replayed["media"] == expected


async def test_a_sender_may_only_attach_media_it_can_read_and_that_fits(user):
    alice, bob, carol = await user(), await user(), await user()
    photo = await alice.upload_media(mf.png(), "image/png")
    song = await alice.upload_media(mf.audio("mp3"), "audio/mpeg")

    with pytest.raises(ApiError) as err:  # bob has never seen it
        await bob.send_message(recipient_id=carol.user_id, type="image", media_id=photo["media_id"])
    assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=bob.user_id, type="video", media_id=photo["media_id"])
    assert err.value.code == "bad_request"
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=bob.user_id, type="text", media_id=song["media_id"])
    assert err.value.code == "bad_request"
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=bob.user_id, type="image")
    assert err.value.code == "bad_request"
    await alice.send_message(recipient_id=bob.user_id, type="audio", media_id=song["media_id"])
    await alice.send_message(recipient_id=bob.user_id, type="file", media_id=photo["media_id"])

    # bob received the photo, so he may forward it; then carol may read it too.
    await bob.send_message(recipient_id=carol.user_id, type="image", media_id=photo["media_id"])
    assert await carol.download_media(photo["media_id"]) == mf.png()


async def test_the_websocket_refuses_foreign_media_too(user):
    alice, bob = await user(), await user()
    photo = await alice.upload_media(mf.png(), "image/png")
    async with bob.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.send_message(
                recipient_id=alice.user_id, type="image", media_id=photo["media_id"]
            )
    assert err.value.code == "not_found"


async def test_retention_removes_only_unreferenced_old_uploads(services, user, tmp_path):
    media_service = services.media
    alice, bob = await user(), await user()
    shared = mf.png(120, 90)
    sent = await alice.upload_media(shared, "image/png")
    unsent_same_bytes = await bob.upload_media(shared, "image/png")
    unsent = await alice.upload_media(PDF, "application/pdf")
    await alice.send_message(recipient_id=bob.user_id, type="image", media_id=sent["media_id"])
    assert len(blob_files(tmp_path)) == 3  # png, its thumbnail, pdf

    assert await media_service.sweep() == 0  # within the grace period: nothing goes
    later = now_ms() + 25 * 3600 * 1000
    assert await media_service.sweep(now=later) == 2
    for gone, owner in ((unsent, alice), (unsent_same_bytes, bob)):
        with pytest.raises(ApiError) as err:
            await owner.download_media(gone["media_id"])
        assert err.value.code == "not_found"
    assert len(blob_files(tmp_path)) == 2  # the sent png and its thumbnail stay
    assert await bob.download_media(sent["media_id"]) == shared
    assert await media_service.sweep(now=later) == 0


async def test_an_upload_too_close_to_its_retention_cannot_be_sent(server, user, monkeypatch):
    alice, bob = await user(), await user()
    media = await alice.upload_media(mf.png(), "image/png")
    import chatd.core.services.media as media_module

    real_now = media_module.now_ms
    monkeypatch.setattr(media_module, "now_ms", lambda: real_now() + 24 * 3600 * 1000 - 60_000)
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=bob.user_id, type="image", media_id=media["media_id"])
    assert err.value.code == "not_found"


async def test_media_metrics_count_bytes_and_thumbnail_time(user):
    alice = await user()
    data = mf.jpeg(800, 600)
    media = await alice.upload_media(data, "image/jpeg")
    body = await alice.download_media(media["media_id"])
    await alice.download_media(media["media_id"], byte_range="bytes=0-9")
    metrics = await alice.metrics()
    assert f"chatd_media_uploaded_bytes_total {float(media['size'])}" in metrics
    assert f'chatd_media_served_bytes_total{{what="file"}} {float(len(body) + 10)}' in metrics
    assert "chatd_media_thumbnail_seconds_count 1.0" in metrics
