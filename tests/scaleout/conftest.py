"""Fixtures for the several-workers and several-hosts tests: a real ``redis-server``, real
gunicorn clusters, and real store clients of both versions (the interop suite's driver).

Every cluster gets a short presence keepalive (3 s) so departures show quickly; servers, Redis
and drivers are stopped after the test, and on failure their logs and wire traces are printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.conftest import (  # noqa: F401 (fixtures and the report hook, reused)
    close_driver,
    driver_bundles,
    failed_in,
    pytest_runtest_makereport,
)
from tests.interop.driver import NodeDriver

from ..redis_server import RedisServer
from .cluster import Cluster

KEEPALIVE_SECONDS = 3
# The 3.x clients, side by side in each library (5.5.0 speaks a newer protocol of its own).
VERSIONS = ("3.6.3", "3.2.1")


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A started ``redis-server`` on a free port (``stop()``/``start()``/``restart()`` it)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if failed_in(request):
            print(server.log_tail())


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    """``make_cluster(workers, name=, env=, port=, worker_connections=)``: a started cluster."""
    clusters: list[Cluster] = []

    def make(
        workers: int,
        *,
        name: str = "server",
        env: dict[str, str] | None = None,
        port: int = 0,
        worker_connections: int = 1000,
    ) -> Cluster:
        cluster = Cluster(
            tmp_path / name,
            workers=workers,
            env={"VERDANT_PRESENCE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS), **(env or {})},
            port=port,
            worker_connections=worker_connections,
        )
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()
        if failed_in(request):
            for cluster in clusters:
                print(cluster.log_tail())


@pytest.fixture
def drivers(
    driver_bundles: dict[str, Path],  # noqa: F811 (the imported fixture)
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, NodeDriver]]:
    """One Node driver per store version (3.6.3 and 3.2.1), so both clients share a library."""
    opened: dict[str, NodeDriver] = {}
    try:
        for version in VERSIONS:
            opened[version] = NodeDriver(version)
        yield opened
    finally:
        failed = failed_in(request)
        for driver in opened.values():
            close_driver(driver, failed)
