"""Router contract: events reach every node's sockets, invalidations every node."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chatd.cluster.local import LocalRouter
from chatd.core.events import Event, Invalidation
from chatd.core.ports.router import Router
from tests.ports.conftest import RecordingSockets

ROUTERS: dict[str, Callable[[], Router]] = {"local": LocalRouter}


@pytest.fixture(params=sorted(ROUTERS))
def router(request: pytest.FixtureRequest) -> Router:
    return ROUTERS[request.param]()


def _event(n: int) -> Event:
    return Event("new_message", {"n": n}, chat_id="c", seq=n)


def test_one_node_gets_what_is_published_with_the_skipped_device(router: Router) -> None:
    node = RecordingSockets()
    router.attach("a", node, node.apply)
    router.publish(["u1", "u2"], _event(1), skip_device="d1")
    assert node.delivered == [(["u1", "u2"], _event(1), "d1")]


def test_every_node_gets_every_event_in_publish_order(router: Router) -> None:
    nodes = {name: RecordingSockets() for name in ("a", "b", "c")}
    for name, node in nodes.items():
        router.attach(name, node, node.apply)
    for n in range(1, 51):
        router.publish(iter(["u1"]), _event(n))  # an iterator is read once, for all nodes
    for node in nodes.values():
        assert [users for users, _, _ in node.delivered] == [["u1"]] * 50
        assert node.events() == [{"n": n} for n in range(1, 51)]


def test_a_detached_node_gets_nothing_more(router: Router) -> None:
    a, b = RecordingSockets(), RecordingSockets()
    router.attach("a", a, a.apply)
    router.attach("b", b, b.apply)
    router.publish(["u"], _event(1))
    router.detach("b")
    router.publish(["u"], _event(2))
    router.invalidate(Invalidation.membership("c"))
    assert a.events() == [{"n": 1}, {"n": 2}] and b.events() == [{"n": 1}]
    assert len(a.invalidations) == 1 and b.invalidations == []


def test_an_invalidation_reaches_every_node_the_origin_included(router: Router) -> None:
    a, b = RecordingSockets(), RecordingSockets()
    router.attach("a", a, a.apply)
    router.attach("b", b, b.apply)
    revoked = Invalidation.devices(["d1", "d2"], "token revoked")
    router.invalidate(revoked)
    router.invalidate(Invalidation.membership("chat-1"))
    for node in (a, b):
        assert node.invalidations == [revoked, Invalidation.membership("chat-1")]


def test_one_failing_node_does_not_keep_an_invalidation_from_the_others(router: Router) -> None:
    a, b = RecordingSockets(), RecordingSockets()

    def broken(invalidation: Invalidation) -> None:
        raise RuntimeError("this node's cache is broken")

    router.attach("a", a, broken)
    router.attach("b", b, b.apply)
    router.invalidate(Invalidation.membership("c"))
    assert b.invalidations == [Invalidation.membership("c")]
