"""The gossip library alone, on a simulated network with a virtual clock.

Every run is deterministic by its seed; the network loses, delays and reorders
datagrams and cuts partitions as each test says.
"""

from __future__ import annotations

import pytest

from chatd.cluster.gossip.base import Timings
from chatd.cluster.gossip.codec import Suspect
from chatd.testing.gossipnet import SimNetwork


def cluster(seed: int, size: int, **options) -> tuple[SimNetwork, list]:
    net = SimNetwork(seed, **options)
    nodes = [net.add("n0")] + [net.add(f"n{i}", seeds=["n0"]) for i in range(1, size)]
    assert net.clock.run_until(lambda: agree(nodes, size), 30) is not None, "no convergence"
    return net, nodes


def agree(nodes, size: int) -> bool:
    return all(sum(m.status == "alive" for m in n.members()) == size for n in nodes)


def status(node, of: str) -> str:
    member = node.member(of)
    return member.status if member else "unknown"


@pytest.mark.parametrize("seed", range(8))
def test_a_dead_node_is_suspect_within_5s_and_dead_within_15s(seed):
    net, nodes = cluster(seed, 5, delay=(0.001, 0.02))
    net.clock.run_for(net.rng.uniform(0, 3))  # die at any point of a probe round
    net.kill("n3")
    others = [n for n in nodes if n.node_id != "n3"]
    suspected = net.clock.run_until(
        lambda: all(status(n, "n3") in ("suspect", "dead") for n in others), 15
    )
    assert suspected is not None and suspected <= 5.0
    dead = net.clock.run_until(lambda: all(status(n, "n3") == "dead" for n in others), 15)
    assert dead is not None and suspected + dead <= 15.0


def test_a_falsely_suspected_node_refutes_with_a_higher_incarnation():
    net, nodes = cluster(1, 4)
    victim = nodes[2]
    before = victim.member(victim.node_id).incarnation
    nodes[0].table.suspect(Suspect(victim.node_id, before, nodes[0].node_id))
    assert status(nodes[0], victim.node_id) == "suspect"
    refuted = net.clock.run_until(
        lambda: all(
            n.member(victim.node_id).status == "alive"
            and n.member(victim.node_id).incarnation > before
            for n in nodes
        ),
        5,
    )
    assert refuted is not None
    net.clock.run_for(30)  # and nobody declares it dead later
    assert all(status(n, victim.node_id) == "alive" for n in nodes)


def test_a_stale_suspicion_below_the_incarnation_is_ignored():
    net, nodes = cluster(2, 3)
    nodes[1].set_meta({"connections": 1})  # raises its incarnation
    net.clock.run_for(2)
    old = nodes[1].member("n1").incarnation - 1
    nodes[0].table.suspect(Suspect("n1", old, "n0"))
    assert status(nodes[0], "n1") == "alive"


def test_an_update_reaches_all_20_nodes_within_a_few_gossip_rounds():
    net, nodes = cluster(3, 20)
    net.clock.run_for(5)
    nodes[7].set_meta({"connections": 42})
    took = net.clock.run_until(
        lambda: all(n.member("n7").meta.get("connections") == 42 for n in nodes), 10
    )
    # An epidemic over 20 nodes, 3 peers a round every 200 ms: a handful of rounds.
    assert took is not None and took <= 2.0


def test_20_members_converge_and_stay_converged_with_5_percent_loss():
    net, nodes = cluster(4, 20, loss=0.05)
    net.clock.run_for(120)
    assert agree(nodes, 20)


@pytest.mark.parametrize("seed", range(3))
def test_confirmations_from_other_nodes_shorten_the_suspicion(seed):
    """Lifeguard: with 10 nodes a suspicion lasts 8 s alone, ~5.5 s once another
    node confirms it, 4 s (the minimum) with two."""
    net, nodes = cluster(seed, 10)
    for node in nodes:
        node.prober.stop()  # only the suspicions under test may change anything
    observer = nodes[0]
    for confirmations, expected in ((0, 8.0), (1, 5.48), (2, 4.0)):
        target = nodes[1 + confirmations]
        target.stop()
        inc = target.member(target.node_id).incarnation
        observer.table.suspect(Suspect(target.node_id, inc, "n9"))
        for who in ("n8", "n7")[:confirmations]:
            observer.table.suspect(Suspect(target.node_id, inc, who))
        took = net.clock.run_until(lambda t=target: status(observer, t.node_id) == "dead", 20)
        assert took == pytest.approx(expected, abs=0.01)


def test_the_accuser_and_repeated_confirmations_do_not_count():
    net, nodes = cluster(5, 10)
    for node in nodes:
        node.prober.stop()
    nodes[4].stop()
    observer = nodes[0]
    inc = observer.member("n4").incarnation
    for who in ("n9", "n9", "n8", "n8", "n8"):  # n9 accuses; only n8 confirms, once
        observer.table.suspect(Suspect("n4", inc, who))
    took = net.clock.run_until(lambda: status(observer, "n4") == "dead", 20)
    assert took == pytest.approx(5.48, abs=0.01)


def test_a_partition_is_detected_and_heals_by_push_pull():
    net, nodes = cluster(6, 6)
    left, right = ["n0", "n1", "n2"], ["n3", "n4", "n5"]
    net.partition(left, right)
    by_name = {n.node_id: n for n in nodes}

    def split() -> bool:
        return all(
            status(by_name[a], b) == "dead" and status(by_name[b], a) == "dead"
            for a in left
            for b in right
        )

    assert net.clock.run_until(split, 30) is not None
    net.heal()
    # Push-pull with a dead node (every 30 s) finds the other side again.
    healed = net.clock.run_until(lambda: agree(nodes, 6), 70)
    assert healed is not None


def test_a_node_that_leaves_is_left_everywhere_at_once_and_never_suspected():
    net, nodes = cluster(7, 5)
    seen: list[str] = []

    def record(member) -> None:
        if member.node_id == "n2":
            seen.append(member.status)

    for n in nodes:
        n.subscribe(record)
    nodes[2].leave()
    took = net.clock.run_until(
        lambda: all(status(n, "n2") == "left" for n in nodes if n.node_id != "n2"), 5
    )
    assert took is not None and took < 0.5
    nodes[2].stop()
    net.kill("n2")
    net.clock.run_for(30)
    assert set(seen) == {"left"}
    assert all(len(n.alive()) == 4 for n in nodes if n.node_id != "n2")


def test_a_restarted_node_outbids_its_former_life():
    net, nodes = cluster(8, 3)
    net.kill("n2")
    others = nodes[:2]
    assert net.clock.run_until(lambda: all(status(n, "n2") == "dead" for n in others), 20)
    again = net.add("n2", seeds=["n0"])
    assert net.clock.run_until(lambda: agree([*others, again], 3), 10) is not None


def test_a_run_is_the_same_for_the_same_seed():
    runs = []
    for _ in range(2):
        net, _nodes = cluster(9, 6, loss=0.05, delay=(0.001, 0.05))
        net.kill("n1")
        net.clock.run_for(20)
        runs.append([(round(t, 9), a, b) for t, a, b, _ in net.sent])
    assert runs[0] == runs[1]


def test_probes_slow_down_on_a_node_that_misses_its_own_nacks():
    """Lifeguard awareness: when a node's probes fail and no nack comes back, it
    is probably the slow one; it then probes, and accuses, less often."""
    timings = Timings()
    net, nodes = cluster(10, 4, timings=timings)
    net.partition(["n0"], ["n1", "n2", "n3"])
    net.clock.run_for(6)
    assert nodes[0].prober.awareness.score > 0
    assert nodes[1].prober.awareness.score == 0
