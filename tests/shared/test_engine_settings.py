"""Engines from the environment: the multi-node topology's settings, and the errors that name the variable."""

from __future__ import annotations

import pytest

from quizmesh.redis_client import connect
from quizmesh.settings import Engines, SettingsError

CLUSTER = {
    "QUIZMESH_REDIS_MODE": "cluster",
    "QUIZMESH_REDIS_URL": "redis://127.0.0.1:16400,redis://127.0.0.1:16401",
    "QUIZMESH_REDIS_PUBSUB_URL": "redis://127.0.0.1:16410/0",
    "QUIZMESH_POSTGRES_REPLICA_DSN": "postgresql://quizmesh@127.0.0.1:15443/quizmesh",
}


def test_the_single_node_defaults_are_unchanged() -> None:
    engines = Engines.from_env({})
    assert (engines.redis_mode, engines.redis_pubsub_url, engines.postgres_replica_dsn) == ("single", "", "")


def test_the_multi_node_settings_are_read() -> None:
    engines = Engines.from_env(CLUSTER)
    assert engines.redis_mode == "cluster"
    assert engines.redis_pubsub_url == "redis://127.0.0.1:16410/0"
    assert engines.postgres_replica_dsn.endswith(":15443/quizmesh")


def test_a_redis_cluster_without_a_pubsub_redis_is_refused() -> None:
    without_pubsub = {k: v for k, v in CLUSTER.items() if k != "QUIZMESH_REDIS_PUBSUB_URL"}
    with pytest.raises(SettingsError, match="QUIZMESH_REDIS_PUBSUB_URL"):
        Engines.from_env(without_pubsub)
    # The embedded mode keeps its state in memory: no Redis, so nothing to refuse.
    assert Engines.from_env({**without_pubsub, "QUIZMESH_STATE_STORE": "memory"}).redis_mode == "cluster"


def test_an_unknown_redis_mode_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="QUIZMESH_REDIS_MODE='sentinel'"):
        Engines.from_env({"QUIZMESH_REDIS_MODE": "sentinel"})


def test_cluster_seeds_that_are_not_urls_are_refused_with_the_variable_named() -> None:
    with pytest.raises(SettingsError, match="QUIZMESH_REDIS_URL"):
        connect("127.0.0.1:16400", "cluster")
