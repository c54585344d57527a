"""Several servers on one database: what crosses between them, with and without a message queue.

Each ``SyncServer`` here stands for one worker process (its own hub, identity and background
loops); they share the sqlite file and, when configured, a real redis-server. Real processes
under gunicorn are in the scale-out suite.
"""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import websocket
from flask import Flask

from flask_verdant import Verdant
from flask_verdant.coordination import Coordinator
from flask_verdant.errors import ErrorCode
from flask_verdant.storage import Database
from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import SECRET
from .realtime_helpers import Closed, Socket, serving, sync_server, wait_for
from .redis_server import RedisServer


class Workers:
    """Apps on one database, served on real sockets, like the workers of one deployment."""

    def __init__(self, database_file: str, config: dict[str, Any]) -> None:
        self.database_file = database_file
        self.config = config
        self._stack = ExitStack()
        self.sockets: list[Socket] = []

    def app(self) -> Flask:
        app = Flask("worker")
        app.config.update(TESTING=True, **self.config)
        Verdant(app, database_file=self.database_file, token_secret=SECRET)
        return app

    def serve(self, app: Flask | None = None) -> tuple[Flask, str]:
        app = app or self.app()
        return app, self._stack.enter_context(serving(app))

    def join(
        self, app: Flask, address: str, user: str, library: str = "lib"
    ) -> tuple[VerdantTestClient, Socket]:
        replica = VerdantTestClient(app, library_id=library, user_id=user)
        s = Socket(address, replica.token)
        self.sockets.append(s)
        s.send(replica.presence_message({"name": user}))
        s.send(replica.sync_message())
        s.receive_until("sync-resp")
        return replica, s

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self._stack.close()


@pytest.fixture
def redis_workers(database_file: str, shared_redis: RedisServer) -> Iterator[Workers]:
    workers = Workers(
        database_file,
        {
            "VERDANT_MESSAGE_QUEUE": shared_redis.url,
            "VERDANT_MESSAGE_QUEUE_PREFIX": f"test-{secrets.token_hex(4)}",
            "VERDANT_PRESENCE_KEEPALIVE_SECONDS": 1.0,
        },
    )
    yield workers
    workers.close()


@pytest.fixture
def local_workers(database_file: str) -> Iterator[Workers]:
    workers = Workers(database_file, {})
    yield workers
    workers.close()


def assert_closed(s: Socket, timeout: float = 3.0) -> None:
    """The server ends the socket (eviction cuts it off, with or without a close frame)."""
    with pytest.raises((Closed, websocket.WebSocketConnectionClosedException)):
        s.receive_until("never", timeout=timeout)


def receive_type(s: Socket, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    return s.receive_until(kind, timeout)[-1]


def test_an_operation_reaches_peers_on_every_worker_exactly_once(redis_workers: Workers) -> None:
    (app1, address1), (app2, address2) = redis_workers.serve(), redis_workers.serve()
    alice, alice_socket = redis_workers.join(app1, address1, "alice")
    bob, bob_socket = redis_workers.join(app2, address2, "bob")
    carol, carol_socket = redis_workers.join(app1, address1, "carol")
    for n in range(5):
        alice_socket.send(
            alice.op_message(alice.operation("items/a", {"op": "set", "name": "n", "value": n}))
        )
        receive_type(alice_socket, "server-ack")
    for s in (bob_socket, carol_socket, alice_socket):
        s.send({"type": "heartbeat"})  # its answer comes after every relay already delivered
        relayed = of_type(s.receive_until("heartbeat-response"), "op-re")
        values = [m["operations"][0]["data"]["value"] for m in relayed]
        assert values == ([] if s is alice_socket else [0, 1, 2, 3, 4])


def test_presence_is_shared_and_a_departure_announced_once(redis_workers: Workers) -> None:
    (app1, address1), (app2, address2) = redis_workers.serve(), redis_workers.serve()
    _, alice_socket = redis_workers.join(app1, address1, "alice")
    bob, bob_socket = redis_workers.join(app2, address2, "bob")
    bob_socket.send(bob.sync_message())
    assert set(receive_type(bob_socket, "sync-resp")["peerPresence"]) == {"alice", "bob"}
    _, carol_socket = redis_workers.join(app1, address1, "carol")
    alice_socket.close()
    offline = receive_type(bob_socket, "presence-offline")
    assert offline["userId"] == "alice"
    assert offline == receive_type(carol_socket, "presence-offline")
    assert set(sync_server(app2).library_presence("lib")) == {"bob", "carol"}
    bob_socket.send({"type": "heartbeat"})
    later = bob_socket.receive_until("heartbeat-response", 3)
    assert of_type(later, "presence-offline") == []


def test_eviction_in_one_process_closes_sockets_in_the_others(local_workers: Workers) -> None:
    """Without a message queue too: ``flask verdant evict`` in a shell reaches the server."""
    app, address = local_workers.serve()
    _, s = local_workers.join(app, address, "alice")
    _, other_library = local_workers.join(app, address, "bob", library="other")
    shell = local_workers.app()  # the CLI's process: its own server, no sockets
    started = time.monotonic()
    with shell.app_context():
        shell.extensions["verdant"].evict_library("lib")
    assert_closed(s)
    assert time.monotonic() - started < 1.5
    other_library.send({"type": "heartbeat"})
    assert receive_type(other_library, "heartbeat-response")
    assert sync_server(app).library_presence("lib") == {}


def test_evicting_a_user_elsewhere_closes_only_their_sockets(local_workers: Workers) -> None:
    app, address = local_workers.serve()
    _, alice_socket = local_workers.join(app, address, "alice")
    _, bob_socket = local_workers.join(app, address, "bob")
    sync_server(local_workers.app()).evict_user("lib", "alice")
    assert_closed(alice_socket)
    bob_socket.send({"type": "heartbeat"})
    assert receive_type(bob_socket, "heartbeat-response")


def test_a_profile_change_reaches_every_worker(local_workers: Workers) -> None:
    names = {"alice": "Alice"}
    app = Flask("worker")
    app.config.update(TESTING=True)
    Verdant(
        app,
        database_file=local_workers.database_file,
        token_secret=SECRET,
        profiles=lambda user: {"name": names[user]},
    )
    app, address = local_workers.serve(app)
    local_workers.join(app, address, "alice")
    assert sync_server(app).library_presence("lib")["alice"]["profile"] == {"name": "Alice"}
    names["alice"] = "Alicia"
    sync_server(local_workers.app()).refresh_profile("alice")
    wait_for(lambda: sync_server(app).profiles.get("alice") == {"name": "Alicia"}, timeout=3)


def test_several_servers_without_a_message_queue_refuse_to_split(
    tmp_path: Path,
) -> None:
    """The coordinator's judgement, with a clock the test moves."""
    database = Database(str(tmp_path / "db.sqlite3"))
    now = [1000.0]
    first, second = (
        Coordinator(
            database,
            partial(str, w),
            "",
            lambda event: None,
            clock=lambda: now[0],
            split_grace_seconds=4,
        )
        for w in ("first", "second")
    )
    first.step()
    second.step()
    assert first.refusal() is None and second.refusal() is None
    for _ in range(5):
        now[0] += 1.0
        first.step()
        second.step()
    refusal = first.refusal()
    assert refusal is not None and refusal.code == ErrorCode.UNAVAILABLE
    assert "VERDANT_MESSAGE_QUEUE" in refusal.message
    assert second.refusal() is not None
    second.leave()
    now[0] += 1.0
    first.step()
    assert first.refusal() is None


def test_servers_sharing_a_message_queue_do_not_refuse(tmp_path: Path) -> None:
    database = Database(str(tmp_path / "db.sqlite3"))
    now = [1000.0]
    workers = [
        Coordinator(
            database,
            partial(str, w),
            "redis redis://q/0",
            lambda event: None,
            clock=lambda: now[0],
            split_grace_seconds=1,
        )
        for w in ("first", "second")
    ]
    for _ in range(4):
        now[0] += 1.0
        for worker in workers:
            worker.step()
    assert [worker.refusal() for worker in workers] == [None, None]


@pytest.mark.slow
def test_two_serving_processes_without_a_queue_answer_503_with_the_fix(
    local_workers: Workers,
) -> None:
    (app1, address1), (_, address2) = local_workers.serve(), local_workers.serve()
    replica = VerdantTestClient(app1, library_id="lib", user_id="alice")

    def status(address: str) -> requests.Response:
        return requests.post(
            f"http://{address}/sync",
            json={"messages": [replica.sync_message()]},
            headers={"Authorization": f"Bearer {replica.token}"},
            timeout=5,
        )

    assert status(address1).status_code == 200
    assert status(address2).status_code == 200
    wait_for(lambda: status(address1).status_code == 503, timeout=10, interval=0.5)
    body = status(address2).json()
    assert body["code"] == 5030 and "VERDANT_MESSAGE_QUEUE" in body["message"]


def _write_burst(database_file: str, replica_id: str, count: int, start: Any) -> None:
    app = Flask("racer")
    app.config.update(TESTING=True)
    Verdant(app, database_file=database_file, token_secret=SECRET)
    client = VerdantTestClient(app, library_id="race", user_id=replica_id, replica_id=replica_id)
    client.sync()
    start.wait()
    for n in range(count):
        client.op(
            client.operation(f"items/{replica_id}-{n}", {"op": "initialize", "value": {"n": n}})
        )


def test_two_processes_racing_on_one_library_lose_and_duplicate_nothing(
    database_file: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    racers = [
        context.Process(target=_write_burst, args=(database_file, name, 150, start))
        for name in ("left", "right")
    ]
    for racer in racers:
        racer.start()
    start.set()
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    with sqlite3.connect(database_file) as db:
        orders = [
            row[0]
            for row in db.execute(
                "SELECT serverOrder FROM operations WHERE libraryId = 'race' ORDER BY serverOrder"
            )
        ]
        last = db.execute("SELECT lastServerOrder FROM libraries WHERE id = 'race'").fetchone()[0]
        per_replica = dict(
            db.execute(
                """SELECT replicaId, COUNT(*) FROM operations
                   WHERE libraryId = 'race' GROUP BY replicaId"""
            )
        )
    assert orders == list(range(1, 301)) and last == 300
    assert per_replica == {"left": 150, "right": 150}


def test_without_redis_each_worker_serves_its_sockets_and_clients_resync_after(
    database_file: str, tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    workers = Workers(
        database_file,
        {"VERDANT_MESSAGE_QUEUE": redis_server.url, "VERDANT_PRESENCE_KEEPALIVE_SECONDS": 1.0},
    )
    try:
        (app1, address1), (app2, address2) = workers.serve(), workers.serve()
        alice, alice_socket = workers.join(app1, address1, "alice")
        _, carol_socket = workers.join(app1, address1, "carol")
        _, bob_socket = workers.join(app2, address2, "bob")
        redis_server.stop()
        alice_socket.send(
            alice.op_message(alice.operation("items/a", {"op": "set", "name": "n", "value": 1}))
        )
        assert receive_type(alice_socket, "server-ack")
        assert receive_type(carol_socket, "op-re")["replicaId"] == alice.replica_id
        redis_server.start()
        for s in (alice_socket, carol_socket, bob_socket):
            assert_closed(s, timeout=10)
        _, bob_again = workers.join(app2, address2, "bob")
        alice, alice_again = workers.join(app1, address1, "alice")
        # relays cross workers again, and nobody is cut off a second time
        alice_again.send(
            alice.op_message(alice.operation("items/b", {"op": "set", "name": "n", "value": 2}))
        )
        assert receive_type(bob_again, "op-re")["operations"][0]["oid"] == "items/b"
        bob_again.send({"type": "heartbeat"})
        assert receive_type(bob_again, "heartbeat-response", timeout=3)
    finally:
        workers.close()
        redis_server.stop()


def test_a_worker_that_missed_a_relay_makes_its_clients_resync(
    redis_workers: Workers, shared_redis: RedisServer
) -> None:
    (app1, address1), (app2, address2) = redis_workers.serve(), redis_workers.serve()
    alice, alice_socket = redis_workers.join(app1, address1, "alice")
    _, bob_socket = redis_workers.join(app2, address2, "bob")
    alice_socket.send(
        alice.op_message(alice.operation("items/a", {"op": "set", "name": "n", "value": 1}))
    )
    assert receive_type(bob_socket, "op-re")["operations"][0]["data"]["value"] == 1
    # An op-re whose server orders skip one: as if worker 2 missed a publication.
    prefix = redis_workers.config["VERDANT_MESSAGE_QUEUE_PREFIX"]
    client = redis.Redis(port=shared_redis.port)
    client.publish(f"{prefix}:bus", '["D","lib",null,[3,3]]\n{"type":"op-re","operations":[]}')
    client.close()
    assert_closed(bob_socket)
    assert_closed(alice_socket)


def test_readiness_includes_the_message_queue(redis_workers: Workers, tmp_path: Path) -> None:
    answer = redis_workers.app().test_client().get("/sync/ready")
    assert answer.status_code == 200
    checks = answer.get_json()["checks"]
    assert checks == {"database": True, "serving": True, "message_queue": True}
    unreachable = Workers(
        str(tmp_path / "other.sqlite3"), {"VERDANT_MESSAGE_QUEUE": "redis://127.0.0.1:1/0"}
    )
    answer = unreachable.app().test_client().get("/sync/ready")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["message_queue"] is False
