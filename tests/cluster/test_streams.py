"""Node-to-node TCP streams: dispatched by kind, sealed, refused without the key."""

from __future__ import annotations

import asyncio
import os

import pytest

from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.streams import StreamClosed, StreamServer, connect

KEY = os.urandom(32)


async def test_a_stream_reaches_the_handler_of_its_kind_both_ways() -> None:
    server = StreamServer(Sealer(Keyring((KEY,))))
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def echo(stream) -> None:
        while True:
            frame = await stream.recv()
            await received.put(frame)
            await stream.send(frame.upper())

    server.register("echo", echo)
    await server.start("127.0.0.1", 0)
    try:
        stream = await connect("127.0.0.1", server.port, "echo", Sealer(Keyring((KEY,))))
        await stream.send(b"hello node")
        assert await asyncio.wait_for(stream.recv(), 5) == b"HELLO NODE"
        assert received.get_nowait() == b"hello node"
        await stream.close()
    finally:
        await server.close()


async def test_a_stream_with_another_key_or_an_unknown_kind_is_closed() -> None:
    server = StreamServer(Sealer(Keyring((KEY,))))
    handled: list[bytes] = []

    async def record(stream) -> None:
        handled.append(await stream.recv())

    server.register("link", record)
    await server.start("127.0.0.1", 0)
    try:
        for kind, key in (("link", os.urandom(32)), ("nope", KEY)):
            stream = await connect("127.0.0.1", server.port, kind, Sealer(Keyring((key,))))
            stream.write(b"payload")
            with pytest.raises(StreamClosed):
                await asyncio.wait_for(stream.recv(), 5)
        assert handled == []
    finally:
        await server.close()


async def test_a_stream_meant_for_another_node_is_refused_and_counted() -> None:
    sealer = Sealer(Keyring((KEY,)))
    server = StreamServer(sealer)
    handled: list[bytes] = []

    async def record(stream) -> None:
        handled.append(await stream.recv())
        await stream.send(b"taken")

    server.register("link", record, node_id="c")
    await server.start("127.0.0.1", 0)
    try:
        dialer = Sealer(Keyring((KEY,)))
        stream = await connect("127.0.0.1", server.port, "link", dialer, to="b")
        stream.write(b"for b")
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(stream.recv(), 5)
        assert sealer.dropped["wrong_destination"] == 1 and handled == []
        stream = await connect("127.0.0.1", server.port, "link", dialer, to="c")
        await stream.send(b"for c")
        assert await asyncio.wait_for(stream.recv(), 5) == b"taken"
        assert handled == [b"for c"]
        await stream.close()
    finally:
        await server.close()


async def test_a_frame_spliced_in_from_another_stream_is_refused_and_counted() -> None:
    sealer = Sealer(Keyring((KEY,)))
    server = StreamServer(sealer)
    handled: list[bytes] = []

    async def record(stream) -> None:
        while True:
            handled.append(await stream.recv())

    server.register("echo", record)
    await server.start("127.0.0.1", 0)
    try:
        stream = await connect("127.0.0.1", server.port, "echo", Sealer(Keyring((KEY,))))
        await stream.send(b"mine")
        stream.bind(os.urandom(8))  # what frames of another connection start with
        await stream.send(b"spliced")
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(stream.recv(), 5)
        assert handled == [b"mine"] and sealer.dropped["wrong_stream"] == 1
    finally:
        await server.close()
