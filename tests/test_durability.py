"""Acknowledged means on disk: replies wait for the WAL's fsync, which concurrent commits share."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from flask import Flask

from flask_verdant.storage import Database
from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET
from .realtime_helpers import Closed, ServerProcess, Socket, serving, sync_server, wait_for


class HeldSync:
    """Replaces the WAL's fsync with one that waits until released, counting the calls."""

    def __init__(self, database: Database) -> None:
        assert database.group_commit is not None
        self.group_commit = database.group_commit
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.group_commit.fsync = self._fsync

    def _fsync(self, fd: int) -> None:
        self.calls += 1
        self.started.set()
        assert self.release.wait(10), "the test never released the sync"
        os.fsync(fd)


def post_messages(
    address: str, replica: VerdantTestClient, *messages: dict[str, Any]
) -> requests.Response:
    """One real HTTP sync request of ``replica`` (the test client's own ``post`` is in-process)."""
    return requests.post(
        f"http://{address}/sync",
        json={"messages": list(messages)},
        headers={"Authorization": f"Bearer {replica.token}"},
        timeout=30,
    )


@pytest.fixture
def live(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    # No compaction: its passes are durable commits too, and one counted among the pushes'
    # commits below let the held sync go before the last push had committed (a third sync).
    app = make_app(disable_rebasing=True)
    with serving(app) as address:
        yield app, address


def test_a_websocket_ack_waits_for_the_fsync_of_its_commit(live: tuple[Flask, str]) -> None:
    app, address = live
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    s = Socket(address, alice.token)
    try:
        s.send(alice.sync_message())
        s.receive_until("sync-resp")
        held = HeldSync(sync_server(app).database)
        op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
        s.send(alice.op_message(op))
        assert held.started.wait(5), "the commit was never synced"
        # The commit is done and its sync is in flight: no acknowledgement may leave yet.
        with pytest.raises(websocket.WebSocketTimeoutException):
            s.receive(timeout=0.3)
        held.release.set()
        acks = [m for m in s.receive_until("server-ack") if m["type"] == "server-ack"]
        assert acks == [{"type": "server-ack", "timestamp": acks[0]["timestamp"]}]
    finally:
        s.close()


def test_http_answers_wait_and_share_one_fsync(live: tuple[Flask, str]) -> None:
    app, address = live
    replicas = [VerdantTestClient(app, library_id="lib", user_id=f"u{i}") for i in range(8)]
    for replica in replicas:
        replica.sync()
    group_commit = sync_server(app).database.group_commit
    assert group_commit is not None
    held = HeldSync(sync_server(app).database)
    answers: dict[int, int] = {}

    def push(index: int, replica: VerdantTestClient) -> None:
        op = replica.operation(f"items/{index}:x", {"op": "set", "name": "n", "value": index})
        answers[index] = post_messages(address, replica, replica.op_message(op)).status_code

    first = threading.Thread(target=push, args=(0, replicas[0]))
    first.start()
    assert held.started.wait(5)
    committed = group_commit.commits
    rest = [threading.Thread(target=push, args=(i, r)) for i, r in enumerate(replicas) if i]
    for thread in rest:
        thread.start()
    # The others commit while the first sync is in flight, and wait for the next one.
    wait_for(lambda: group_commit.commits >= committed + len(rest))
    assert answers == {}, "an answer left before its commit was on disk"
    held.release.set()
    for thread in [first, *rest]:
        thread.join(30)
    assert answers == {i: 200 for i in range(8)}
    assert held.calls == 2, "the commits made during one fsync must share the next"
    with sqlite3.connect(sync_server(app).database.path) as db:
        assert db.execute("SELECT COUNT(*) FROM operations").fetchone()[0] == 8


def test_os_durability_answers_without_waiting(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_DURABILITY": "os"})
    assert sync_server(app).database.group_commit is None
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync()
    op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
    assert alice.op(op) == []


def test_an_unknown_durability_is_refused(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="durability"):
        make_app({"VERDANT_DURABILITY": "sometimes"})


@pytest.mark.slow
def test_killing_a_gunicorn_worker_in_a_burst_loses_nothing_acknowledged(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    database_file = tmp_path / "verdant.sqlite3"
    server = ServerProcess(
        "gunicorn",
        tmp_path,
        {
            "FLASK_VERDANT_TOKEN_SECRET": SECRET,
            "FLASK_VERDANT_DATABASE_FILE": str(database_file),
            # A lone writer's operations fold as it writes: the answer below would hold
            # baselines, and this test reads the acknowledged operations themselves.
            "FLASK_VERDANT_DISABLE_REBASING": "true",
        },
    )
    try:
        signer = make_app()  # signs tokens with the server's secret
        alice = VerdantTestClient(signer, library_id="burst", user_id="alice")
        s = Socket(server.address, alice.token)
        s.send(alice.sync_message())
        s.receive_until("sync-resp")
        acked: list[str] = []
        sent: list[str] = []
        worker = server.worker_pids()[0]

        sender = threading.Thread(target=send_forever, args=(s, alice, sent), daemon=True)
        sender.start()
        try:
            while len(acked) < 200:
                message = s.receive(timeout=10)
                if message["type"] == "server-ack":
                    acked.append(message["timestamp"])
            os.kill(worker, signal.SIGKILL)
            while True:
                message = s.receive(timeout=10)
                if message["type"] == "server-ack":
                    acked.append(message["timestamp"])
        except (Closed, websocket.WebSocketConnectionClosedException, ConnectionError):
            pass
        finally:
            s.close()
        sender.join(10)
        # gunicorn starts a new worker; what it serves is what the file holds.
        wait_for(lambda: server.worker_pids() and server.worker_pids()[0] != worker, timeout=30)
        bob = VerdantTestClient(signer, library_id="burst", user_id="bob")
        response = post_messages(server.address, bob, bob.sync_message())
        (answer,) = [m for m in response.json()["messages"] if m["type"] == "sync-resp"]
        stored = {operation["timestamp"] for operation in answer["operations"]}
        assert len(acked) >= 200 and len(sent) > len(acked)
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged operations were lost"
    finally:
        server.stop()


def send_forever(s: Socket, replica: VerdantTestClient, sent: list[str]) -> None:
    """Send ops as fast as the socket takes them, never waiting for acknowledgements."""
    index = 0
    try:
        while True:
            op = replica.operation(f"items/{index}:x", {"op": "set", "name": "n", "value": index})
            message = replica.op_message(op)
            # The ack names the message's timestamp: make it the operation's.
            message["timestamp"] = op["timestamp"]
            s.send(message)
            sent.append(op["timestamp"])
            index += 1
    except (OSError, websocket.WebSocketException):
        return


def test_an_http_answer_holds_what_others_committed_while_it_waited_for_its_fsync(
    live: tuple[Flask, str],
) -> None:
    """The pull rules count on it: a commit made while a request is registered is in its answer."""
    app, address = live
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    alice.sync()
    bob.sync()
    group_commit = sync_server(app).database.group_commit
    assert group_commit is not None
    held = HeldSync(sync_server(app).database)
    answers: dict[str, list[dict[str, object]]] = {}

    def push(name: str, replica: VerdantTestClient) -> None:
        op = replica.operation(f"items/{name}:x", {"op": "set", "name": "n", "value": name})
        answers[name] = post_messages(address, replica, replica.op_message(op)).json()["messages"]

    first = threading.Thread(target=push, args=("alice", alice))
    first.start()
    assert held.started.wait(5)
    committed = group_commit.commits
    second = threading.Thread(target=push, args=("bob", bob))
    second.start()
    wait_for(lambda: group_commit.commits > committed)  # bob's commit waits for the next sync
    held.release.set()
    first.join(30)
    second.join(30)
    relayed = [m for m in answers["alice"] if m["type"] == "op-re"]
    assert [m["replicaId"] for m in relayed] == [bob.replica_id]
