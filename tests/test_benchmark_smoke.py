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
