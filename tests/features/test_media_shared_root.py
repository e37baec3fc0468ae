"""Several nodes on one media directory (``[media.local] root``, e.g. NFS): any node
serves any upload, and a node starting up never touches another's uploads in flight."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from chatd.media.local import create
from chatd.plugins import PluginContext


def store_of(node_id: str, data_dir: Path, shared: Path):
    context = PluginContext("media.local", data_dir, node_id)
    return create({"root": str(shared)}, context)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(store, sha256: str, size: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, 0, size)])


async def test_an_upload_through_one_node_is_read_through_another(tmp_path):
    shared = tmp_path / "shared-media"
    a = store_of("node-a", tmp_path / "a", shared)
    b = store_of("node-b", tmp_path / "b", shared)
    await a.open()
    await b.open()
    body = b"a photo's bytes" * 1000
    staged = await a.stage(chunks(body[:5000], body[5000:]), limit=1 << 20)
    await a.publish(staged)
    assert staged.sha256 == hashlib.sha256(body).hexdigest()
    assert await b.exists(staged.sha256)
    assert await read_all(b, staged.sha256, len(body)) == body
    assert not (tmp_path / "a" / "media").exists(), "the data dir is not used when root is set"


async def test_a_node_starting_leaves_another_nodes_staged_upload_alone(tmp_path):
    shared = tmp_path / "shared-media"
    a = store_of("node-a", tmp_path / "a", shared)
    await a.open()
    staged = await a.stage(chunks(b"half an upload"), limit=1 << 20)
    b = store_of("node-b", tmp_path / "b", shared)
    await b.open()  # cleans up after its own crashed runs only
    await a.publish(staged)
    assert await b.exists(staged.sha256)


async def test_without_root_blobs_stay_in_the_data_dir(tmp_path):
    store = create({}, PluginContext("media.local", tmp_path, "node-a"))
    await store.open()
    staged = await store.stage(chunks(b"x"), limit=10)
    await store.publish(staged)
    assert (tmp_path / "media" / "blobs").is_dir()
