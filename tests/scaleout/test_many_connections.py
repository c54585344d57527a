"""One gevent worker holding more sockets than ``select()`` can name (file descriptors past
1,023): a worker at ``--worker-connections 10000`` must serve its late clients like its first."""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator

import pytest

from tests.interop.driver import wait_until
from tests.realtime_helpers import Socket

from .conftest import MakeCluster
from .helpers import sync_body, token_for

pytestmark = pytest.mark.slow

HELD = 1100  # more than FD_SETSIZE (1024) in the worker


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for the held sockets here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * HELD + 512
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"the open-files hard limit ({hard}) is below {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_websockets_past_file_descriptor_1023_sync_and_receive_broadcasts(
    open_files: None, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster(1, worker_connections=2 * HELD)
    (worker,) = cluster.worker_pids()
    held = [socket.create_connection(("127.0.0.1", cluster.port)) for _ in range(HELD)]
    sockets: list[Socket] = []
    try:
        wait_until(
            lambda: cluster.connections()[worker] >= HELD,
            30,
            message=lambda: f"the worker holds {cluster.connections()}",
        )
        address = f"127.0.0.1:{cluster.port}"
        token = token_for("crowded", "alice", cluster.sync_url)
        sockets = [Socket(address, token) for _ in range(2)]
        writer, reader = sockets
        reader.send(sync_body("reader-replica", "items/none")["messages"][0] | {"operations": []})
        assert reader.receive_until("sync-resp", timeout=10)[-1]["type"] == "sync-resp"
        writer.send(sync_body("writer-replica", "items/late")["messages"][0])
        assert writer.receive_until("sync-resp", timeout=10)[-1]["type"] == "sync-resp"
        relayed = reader.receive_until("op-re", timeout=10)[-1]
        assert [op["oid"] for op in relayed["operations"]] == ["items/late"]
    finally:
        for ws in sockets:
            ws.close()
        for sock in held:
            sock.close()
