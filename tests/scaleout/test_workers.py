"""Several gunicorn gevent workers on one sqlite file, with the real store clients (3.6.3 and
3.2.1 side by side in one library), placed on chosen workers.

With ``VERDANT_MESSAGE_QUEUE`` (a real ``redis-server``) every worker's clients see every other
worker's operations and presence; ``flask verdant evict`` in another process reaches the running
workers with or without Redis; a ``kill -9`` of a worker and a Redis restart lose nothing. Without
a message queue, a second worker must not split a library silently: sync requests answer 503 and
the log says what to set.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from functools import partial

import pytest
import requests

from tests.interop.driver import Client, NodeDriver, wait_until

from ..redis_server import RedisServer
from .cluster import Cluster
from .conftest import KEEPALIVE_SECONDS, MakeCluster
from .helpers import (
    CONVERGE_TIMEOUT,
    last_seq,
    make_doc,
    open_on,
    operations_received,
    post_sync,
    received,
    sent_operations,
    socket_closes,
    sync_body,
    token_for,
    upgrade,
    wait_all_hold,
    wait_converged,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def spread(
    cluster: Cluster, drivers: dict[str, NodeDriver], library: str, per_worker: int = 2
) -> dict[int, list[Client]]:
    """``per_worker`` clients on each worker, alternating store versions; by worker pid."""
    versions = itertools.cycle(drivers)
    placed: dict[int, list[Client]] = {}
    for w, pid in enumerate(cluster.worker_pids()):
        placed[pid] = []
        for k in range(per_worker):
            version = next(versions)
            name = f"u{w}{k}-{version.replace('.', '')}"
            placed[pid].append(open_on(cluster, pid, drivers[version], name, library))
    counts = cluster.connections()
    assert all(counts[pid] >= per_worker for pid in placed), f"not spread: {counts}"
    return placed


def everyone(placed: dict[int, list[Client]]) -> list[Client]:
    return [client for clients in placed.values() for client in clients]


def stored(cluster: Cluster, library: str, doc_id: str) -> bool:
    """The server holds the document (whichever worker answers)."""
    response = requests.get(
        f"{cluster.url}/test-admin/snapshot/{library}/items/{doc_id}", timeout=10
    )
    return response.ok and response.json() is not None


def _sees(client: Client) -> str:
    return f"{client.name} sees {sorted(client.presence()['peers'])}"


def _went_offline(offlines: Callable[[Client], int], client: Client) -> bool:
    return offlines(client) >= 1


def _connected(client: Client) -> bool:
    return bool(client.is_connected)


def sees_all_peers(client: Client, clients: list[Client]) -> bool:
    """``client`` sees every other client's user, profile and presence."""
    peers = client.presence()["peers"]
    others = {c.name for c in clients if c is not client}
    return set(peers) == others and all(
        peers[name]["profile"] == {"id": name, "name": name.title()}
        and peers[name]["presence"] == {"cursor": name}
        for name in others
    )


def wait_presence_complete(clients: list[Client], timeout: float = 20.0) -> None:
    for client in clients:
        wait_until(
            partial(sees_all_peers, client, clients),
            timeout,
            message=partial(_sees, client),
        )


def run_together(*jobs: Callable[[], None]) -> None:
    """Run the jobs at once (each driver call blocks; the driver serves them concurrently)."""
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]


def redis_cluster(
    make_cluster: MakeCluster, redis_server: RedisServer, workers: int, **env: str
) -> Cluster:
    return make_cluster(workers, env={"VERDANT_MESSAGE_QUEUE": redis_server.url, **env})


# -- with Redis ----------------------------------------------------------------------------------
def test_operations_and_presence_reach_every_peer_once_across_three_workers(
    make_cluster: MakeCluster, redis_server: RedisServer, drivers: dict[str, NodeDriver]
) -> None:
    cluster = redis_cluster(make_cluster, redis_server, 3)
    placed = spread(cluster, drivers, "fanout")
    clients = everyone(placed)
    wait_presence_complete(clients)

    first = clients[0]
    first.put(make_doc("shared", 0))
    wait_all_hold(clients, {"shared-00"})

    def edits(client: Client) -> Callable[[], None]:
        def run() -> None:
            for i in range(3):
                client.put(make_doc(client.name, i))
                client.push("shared-00", "tags", f"{client.name}-{i}")

        return run

    run_together(*(edits(c) for c in clients))
    final = wait_converged(clients)
    shared = next(d for d in final if d["id"] == "shared-00")
    assert sorted(shared["tags"]) == sorted(f"{c.name}-{i}" for c in clients for i in range(3))
    assert len(final) == 1 + 3 * len(clients)

    # every operation reached every other client exactly once (live op-re; sync-resp counted too)
    sent = {c.name: sent_operations(c) for c in clients}
    assert all(sent.values())
    for client in clients:
        counts = operations_received(client)
        for author in clients:
            if author is client:
                continue
            wrong = {op: counts[op] for op in sent[author.name] if counts[op] != 1}
            assert not wrong, f"{client.name} got {author.name}'s operations {wrong}"

    # one client leaves: every other client hears one presence-offline for it, and no second
    leaver = placed[cluster.worker_pids()[0]][0]
    leaver_replica = leaver.status()["replicaId"]
    marks = {version: last_seq(driver) for version, driver in drivers.items()}
    stayers = [c for c in clients if c is not leaver]
    leaver.close()

    def offlines(client: Client) -> int:
        return sum(
            1
            for m in received(client, marks[client.driver.store_version])
            if m.get("type") == "presence-offline" and m.get("replicaId") == leaver_replica
        )

    for client in stayers:
        wait_until(
            partial(_went_offline, offlines, client), 15, message=f"{client.name}: no offline"
        )
    # a second notice would come by the keepalive at the latest (expiry on another worker)
    time.sleep(KEEPALIVE_SECONDS + 1)
    assert {c.name: offlines(c) for c in stayers} == {c.name: 1 for c in stayers}
    wait_presence_complete(stayers)


def test_kill_9_of_a_worker_mid_burst_loses_nothing(
    make_cluster: MakeCluster, redis_server: RedisServer, drivers: dict[str, NodeDriver]
) -> None:
    cluster = redis_cluster(make_cluster, redis_server, 3)
    placed = spread(cluster, drivers, "killed", per_worker=2)
    clients = everyone(placed)
    victim = cluster.worker_pids()[1]
    victims = placed[victim]
    burst = 12
    halfway = threading.Barrier(len(clients) + 1)

    def writes(client: Client) -> Callable[[], None]:
        def run() -> None:
            for i in range(burst):
                if i == burst // 2:
                    halfway.wait(60)
                client.put(make_doc(client.name, i))
                time.sleep(0.05)

        return run

    def killer() -> None:
        halfway.wait(60)
        cluster.kill_worker(victim)

    run_together(killer, *(writes(c) for c in clients))
    written = {f"{c.name}-{i:02d}" for c in clients for i in range(burst)}

    # the victim's clients reconnect to the other workers (or its replacement) and converge
    pids = cluster.wait_workers(without=victim)
    assert victim not in pids
    wait_all_hold(clients, written)
    final = wait_converged(clients)
    assert {d["id"] for d in final} == written
    for client in victims:
        wait_until(partial(_connected, client), 15, message=f"{client.name} not reconnected")

    # the server holds all of it: a newcomer gets exactly the same
    newcomer = open_on(cluster, None, drivers["3.6.3"], "newcomer", "killed")
    assert wait_converged([newcomer, clients[0]]) == final


def test_a_redis_restart_mid_session_converges(
    make_cluster: MakeCluster, redis_server: RedisServer, drivers: dict[str, NodeDriver]
) -> None:
    cluster = redis_cluster(make_cluster, redis_server, 2)
    placed = spread(cluster, drivers, "outage", per_worker=2)
    clients = everyone(placed)
    wait_presence_complete(clients)
    for client in clients:
        client.put(make_doc(f"{client.name}-before", 0))
    wait_converged(clients)

    redis_server.stop()
    for client in clients:
        client.put(make_doc(f"{client.name}-during", 0))
    # Each worker goes on serving its clients: every write is stored meanwhile. (Live relays
    # between workers wait for Redis; a client whose worker notices it missed one is made to
    # sync, possibly on the other worker, so where clients sit is no longer known here.)
    during = [f"{c.name}-during-00" for c in clients]
    wait_until(
        lambda: all(stored(cluster, "outage", doc) for doc in during),
        CONVERGE_TIMEOUT,
        message=lambda: f"not stored: {[d for d in during if not stored(cluster, 'outage', d)]}",
    )
    redis_server.start()

    for client in clients:
        client.put(make_doc(f"{client.name}-after", 0))
    expected = {f"{c.name}-{phase}-00" for c in clients for phase in ("before", "during", "after")}
    wait_all_hold(clients, expected, timeout=45)
    final = wait_converged(clients)
    assert {d["id"] for d in final} == expected
    wait_presence_complete(clients, timeout=30)


# -- eviction from another process ---------------------------------------------------------------
@pytest.mark.parametrize("queue", ["redis", "none"])
def test_flask_verdant_evict_from_another_process_closes_every_socket(
    queue: str,
    make_cluster: MakeCluster,
    request: pytest.FixtureRequest,
    drivers: dict[str, NodeDriver],
) -> None:
    if queue == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        cluster = redis_cluster(make_cluster, redis_server, 3)
        placed = spread(cluster, drivers, "evicted", per_worker=1)
    else:
        cluster = make_cluster(1)
        placed = spread(cluster, drivers, "evicted", per_worker=2)
    clients = everyone(placed)
    for i, client in enumerate(clients):
        client.put(make_doc("doc", i))
    before = wait_converged(clients)
    assert len(before) == len(clients)

    marks = {version: last_seq(driver) for version, driver in drivers.items()}
    result = cluster.flask("verdant", "evict", "evicted", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    evicted_at = time.monotonic()

    def closed(client: Client) -> bool:
        return socket_closes(client, marks[client.driver.store_version]) >= 1

    wait_until(
        lambda: all(closed(c) for c in clients),
        10,
        message=lambda: f"sockets left open: {[c.name for c in clients if not closed(c)]}",
    )
    # within about 2 s of the command's return (the bound allows for this loop's polling)
    assert time.monotonic() - evicted_at <= 3.0

    # the clients restore the library; a newcomer gets it all from the server
    wait_until(
        lambda: (info := cluster.info("evicted"))["operationsCount"] + info["baselinesCount"] > 0,
        CONVERGE_TIMEOUT,
        message=lambda: f"library not restored: {cluster.info('evicted')}",
    )
    newcomer = open_on(cluster, None, drivers["3.2.1"], "newcomer", "evicted")
    assert wait_converged([newcomer, *clients]) == before


# -- without a message queue ---------------------------------------------------------------------
def test_two_workers_without_a_message_queue_refuse_loudly(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(2)
    first, second = cluster.worker_pids()
    token = token_for("split", "alice", cluster.sync_url)
    with cluster.only(first):
        served = post_sync(cluster.sync_url, token, sync_body("replica-a", "items/a"))
        assert served.status_code == 200, served.text
    with cluster.only(second):
        post_sync(cluster.sync_url, token, sync_body("replica-b", "items/b"))

    def refuses(pid: int) -> bool:
        with cluster.only(pid):
            response = post_sync(cluster.sync_url, token, sync_body("replica-c", "items/c"))
        return response.status_code == 503

    # detection takes up to about 3 s after the second worker's first request
    for pid in (first, second):
        wait_until(partial(refuses, pid), 10, message=f"worker {pid} still serves")

    for pid in (first, second):
        with cluster.only(pid):
            response = post_sync(cluster.sync_url, token, sync_body("replica-d", "items/d"))
            status, body = upgrade(cluster.sync_url, token)
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("application/json")
        for answer in (response.json(), body):
            assert answer["code"] == 5030, answer
            assert "VERDANT_MESSAGE_QUEUE" in answer["message"]
        assert status == 503
    critical = [
        line
        for line in cluster.log().splitlines()
        if "CRITICAL" in line and "VERDANT_MESSAGE_QUEUE" in line
    ]
    assert critical, cluster.log_tail()
