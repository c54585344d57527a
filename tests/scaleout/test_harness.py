"""The scale-out tests' own parts work: Redis stops and restarts, steering places connections on
the chosen worker, and a killed worker is replaced."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import requests

from tests.interop.driver import wait_until

from ..redis_server import RedisServer
from .cluster import Cluster
from .conftest import MakeCluster

pytestmark = pytest.mark.slow


def test_redis_server_stops_and_restarts_on_its_port(redis_server: RedisServer) -> None:
    assert redis_server.ping()
    port = redis_server.port
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.port == port and redis_server.ping()


def _accepted(cluster: Cluster, pid: int, before: dict[int, int]) -> bool:
    return cluster.connections()[pid] > before[pid]


def test_steering_places_each_connection_on_the_chosen_worker(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(3)
    pids = cluster.worker_pids()
    assert len(pids) == 3
    held: list[socket.socket] = []
    try:
        for pid in pids:
            before = cluster.connections()
            with cluster.only(pid):
                held.append(socket.create_connection(("127.0.0.1", cluster.port), timeout=5))
                wait_until(
                    partial(_accepted, cluster, pid, before),
                    10,
                    message=f"not accepted by {pid}",
                )
        assert all(count >= 1 for count in cluster.connections().values())
        # stopped workers kept their connections and serve again
        for _ in range(6):
            assert requests.get(f"{cluster.url}/health", timeout=5).ok
    finally:
        for sock in held:
            sock.close()


def test_a_killed_worker_is_replaced(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(2)
    victim = cluster.worker_pids()[0]
    cluster.kill_worker(victim)
    pids = cluster.wait_workers(without=victim)
    assert victim not in pids and len(pids) == 2
    assert requests.get(f"{cluster.url}/health", timeout=5).ok
