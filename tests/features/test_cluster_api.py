"""``GET /cluster`` and the ``[cluster]`` settings, on one node.

The clustered form (three processes on one ScyllaDB keyspace) is in
tests/cluster/test_cluster_processes.py.
"""

from __future__ import annotations

import pytest

from chatd.client import ApiError, ChatdClient
from chatd.config import ConfigError, from_dict
from tests.conftest import PASSWORD


async def test_only_admins_see_the_cluster_and_a_lone_node_is_a_cluster_of_one(
    user, services, base_url
):
    alice = await user()
    with pytest.raises(ApiError) as refused:
        await alice.cluster()
    assert refused.value.code == "forbidden"
    await services.accounts.create_user("root", PASSWORD, is_admin=True)
    async with ChatdClient(base_url) as root:
        await root.login("root", PASSWORD)
        answer = await root.cluster()
        health = await root.health()
    assert answer["node_id"] == services.node_id
    [node] = answer["nodes"]
    assert node["node_id"] == services.node_id and node["status"] == "alive"
    assert node["joined_at"].endswith("Z")
    assert "cluster" not in health


async def test_the_cluster_needs_a_token(base_url):
    async with ChatdClient(base_url) as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.cluster()
    assert refused.value.code == "unauthorized"


@pytest.mark.parametrize(
    ("cluster", "storage", "named"),
    [
        ({"enabled": True, "secret_file": "k"}, "sqlite", "[cluster] enabled"),
        ({"enabled": True}, "scylla", "[cluster] secret_file"),
        ({"bind": "nohost"}, "sqlite", "[cluster] bind"),
        ({"seeds": ["10.0.0.1"]}, "sqlite", "[cluster] seeds"),
        ({"enabled": True, "secret_file": "k", "bind": "0.0.0.0:7946"}, "scylla", "advertise"),
        ({"probe_timeout_s": 2.0}, "sqlite", "[cluster] probe_timeout_s"),
    ],
)
def test_cluster_settings_that_cannot_work_stop_start_up_naming_the_key(cluster, storage, named):
    with pytest.raises(ConfigError) as stopped:
        from_dict({"cluster": cluster, "storage": {"backend": storage}})
    assert named in str(stopped.value)


def test_a_cluster_key_file_that_is_not_64_hex_characters_stops_start_up(tmp_path):
    from chatd.cluster.service import Cluster

    key = tmp_path / "cluster.key"
    key.write_text("not a key\n")
    config = from_dict(
        {
            "storage": {"backend": "scylla"},
            "cluster": {"enabled": True, "secret_file": str(key)},
        }
    )
    with pytest.raises(ConfigError, match=r"\[cluster\] secret_file"):
        Cluster.from_config(config.cluster, "node-1")
