"""The benchmark load generator, run for a few seconds against flask-verdant alone.

It checks the generator as much as the server: each workload must see every operation arrive at
every other replica exactly once, or its numbers would be measuring something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import servers
from benchmarks.plan import SMOKE, Step
from benchmarks.run import run_workload

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RunningServer]:
    directory: Path = tmp_path_factory.mktemp("bench")
    running = servers.start("flask", directory / "db.sqlite3", None, directory / "server.log")
    yield running
    running.stop()


@pytest.mark.parametrize("step", SMOKE, ids=lambda step: step.key)
def test_every_operation_arrives_once(server: servers.RunningServer, step: Step) -> None:
    result = run_workload(server, step, cpu=None, timeout=60)
    delivery = result["delivery"]
    assert delivery["operations"] > 0
    assert delivery["expected"] > 0
    assert (delivery["lost"], delivery["duplicated"], delivery["unknown"]) == (0, 0, 0)
    assert not result.get("disconnected")
    assert not result.get("heartbeatsLost")
    assert not result.get("failedRequests")
    assert result.get("drained", True)


def test_two_workers_with_redis_deliver_every_operation_once(
    tmp_path: Path,
) -> None:
    """The runner's several-workers server: two gunicorn workers and a redis-server it starts.
    Replicas of one library connect to either worker; the fan-out must still be exactly once,
    with the server's CPU time reported per worker and for Redis."""
    server = servers.start("flask-w2-redis", tmp_path / "db.sqlite3", None, tmp_path / "server.log")
    try:
        result = run_workload(server, SMOKE[0], cpu=None, timeout=60)
    finally:
        server.stop()
    delivery = result["delivery"]
    assert delivery["operations"] > 0
    assert (delivery["lost"], delivery["duplicated"], delivery["unknown"]) == (0, 0, 0)
    assert not result.get("disconnected")
    assert result.get("drained", True)
    assert set(result["serverCpuSeconds"]) == {"worker 1", "worker 2", "redis"}
    assert server.broker is not None and server.broker.poll() is not None  # stopped with it
