"""The documented deployments, as real processes serving the example app.

``gunicorn -k gevent -w 1 'example_app:create_app()'`` (with and without ``--preload``) and the
threaded ``flask run`` dev server: websockets, presence, refused frames, slow recipients and
long-poll, observed from the outside only.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from flask import Flask

from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import SECRET
from .realtime_helpers import Closed, ServerProcess, Socket, wait_for

pytestmark = pytest.mark.slow

KEEPALIVE = 1.0
SETTINGS = {
    "FLASK_VERDANT_TOKEN_SECRET": SECRET,
    "FLASK_VERDANT_PRESENCE_KEEPALIVE_SECONDS": str(KEEPALIVE),
    "FLASK_VERDANT_WEBSOCKET_QUEUE_SIZE": "8",
    "FLASK_VERDANT_LONG_POLL_MAX_SECONDS": "5",
    "FLASK_VERDANT_MAX_MESSAGE_BYTES": "300000",
}


def start(kind: str, workdir: Path, *, preload: bool = False) -> ServerProcess:
    env = {**SETTINGS, "FLASK_VERDANT_DATABASE_FILE": str(workdir / "verdant.sqlite3")}
    return ServerProcess(kind, workdir, env, preload=preload)


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start("gunicorn", tmp_path_factory.mktemp("gunicorn"))
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


class Replicas:
    """Message builders and sockets for one test; the sockets are closed after it."""

    def __init__(self, make_app: Callable[..., Flask], server: ServerProcess, library: str):
        self.app = make_app()  # only signs tokens with the server's secret and builds messages
        self.server = server
        self.library = library
        self.sockets: list[Socket] = []

    def replica(self, user: str, **kw: Any) -> VerdantTestClient:
        return VerdantTestClient(self.app, library_id=self.library, user_id=user, **kw)

    def connect(self, replica: VerdantTestClient, **kw: Any) -> Socket:
        s = Socket(self.server.address, replica.token, **kw)
        self.sockets.append(s)
        return s

    def join(self, replica: VerdantTestClient, **kw: Any) -> Socket:
        """A socket that opened like the real client: presence-update, then sync."""
        s = self.connect(replica, **kw)
        s.send(replica.presence_message({"user": replica.user_id}))
        s.send(replica.sync_message())
        s.receive_until("sync-resp")
        return s

    def post(
        self, replica: VerdantTestClient, messages: list[Any], headers: dict[str, str] | None = None
    ) -> requests.Response:
        return requests.post(
            f"http://{self.server.address}/sync",
            json={"messages": messages},
            headers={"Authorization": f"Bearer {replica.token}", **(headers or {})},
            timeout=30,
        )


@pytest.fixture
def replicas(
    make_app: Callable[..., Flask], gunicorn: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[Replicas]:
    r = Replicas(make_app, gunicorn, library=request.node.name)
    yield r
    for s in r.sockets:
        s.close()


def heartbeat(s: Socket, replica: VerdantTestClient) -> list[dict[str, Any]]:
    s.send({"type": "heartbeat", "replicaId": replica.replica_id, "timestamp": "t"})
    return s.receive_until("heartbeat-response")


def test_the_handshake_answers_bearer_and_refuses_bad_tokens(replicas: Replicas) -> None:
    alice = replicas.replica("alice")
    s = replicas.connect(alice)
    assert s.subprotocol == "Bearer"
    assert heartbeat(s, alice) == [{"type": "heartbeat-response"}]
    expired = replicas.replica("alice", expires_in=timedelta(seconds=-5)).token
    response = requests.get(
        f"http://{replicas.server.address}/sync",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": f"Bearer, {expired}",
        },
        timeout=5,
    )
    assert response.status_code == 401 and response.json()["code"] == 4012


def test_ops_presence_and_exactly_one_offline_on_close(replicas: Replicas) -> None:
    alice, bob = replicas.replica("alice"), replicas.replica("bob")
    a = replicas.join(alice)
    b = replicas.join(bob)
    changed = a.receive_until("presence-changed")[-1]
    assert changed["userInfo"]["id"] == "bob"
    op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
    a.send(alice.op_message(op))
    assert b.receive_until("op-re")[-1]["operations"] == [op]
    b.close()
    offline = [m for m in a.receive_until("presence-offline") if m["type"] == "presence-offline"]
    assert offline == [{"type": "presence-offline", "replicaId": bob.replica_id, "userId": "bob"}]
    # alice's socket keeps her present past the keepalive; nobody leaves twice
    deadline = time.monotonic() + 2 * KEEPALIVE
    while time.monotonic() < deadline:
        assert not of_type(heartbeat(a, alice), "presence-offline")
        time.sleep(0.1)


def test_refused_frames_close_only_their_socket(replicas: Replicas) -> None:
    alice = replicas.replica("alice")
    a = replicas.join(alice)
    for frame, code in (("{not json", 1003), ("x" * 301_000, 1009)):
        m = replicas.connect(replicas.replica("mallory"))
        m.send_raw(frame)
        assert m.close_code() == code
    thief = replicas.connect(replicas.replica("mallory"))
    thief.send({**alice.sync_message(), "timestamp": alice.clock.now()})
    assert thief.close_code() == 1008
    assert heartbeat(a, alice)[-1] == {"type": "heartbeat-response"}


def test_a_recipient_that_stops_reading_does_not_delay_the_others(replicas: Replicas) -> None:
    alice, bob, stuck = (replicas.replica(u) for u in ("alice", "bob", "stuck"))
    a, b = replicas.join(alice), replicas.join(bob)
    s = replicas.join(stuck, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    # from here on `stuck` reads nothing, and every op-re to it is 100 KB
    delays = []
    for n in range(100):
        op = alice.operation(f"items/{n}:x", {"op": "set", "name": "b", "value": "x" * 100_000})
        sent = time.monotonic()
        a.send(alice.op_message(op))
        assert b.receive_until("op-re")[-1]["operations"][0]["oid"] == f"items/{n}:x"
        delays.append(time.monotonic() - sent)
        a.receive_until("server-ack")
    assert max(delays) < 1.0, delays
    # the stuck socket was cut off: reading it now ends in a close, not in 100 messages
    received = 0
    with pytest.raises((Closed, OSError, websocket.WebSocketException)):
        while True:
            s.receive(timeout=5)
            received += 1
    assert received < 100


def test_a_long_poll_gets_another_replicas_op_within_100ms(replicas: Replicas) -> None:
    alice, bob = replicas.replica("alice"), replicas.replica("bob")
    for replica in (alice, bob):
        replicas.post(replica, [replica.sync_message()])
    answer: dict[str, Any] = {}

    def listen() -> None:
        answer["response"] = replicas.post(bob, [], {"Prefer": "wait=5"})
        answer["at"] = time.monotonic()

    poll = threading.Thread(target=listen)
    poll.start()
    time.sleep(0.3)  # the listen is registered well before this
    op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
    acked = replicas.post(alice, [alice.op_message(op)])
    acked_at = time.monotonic()
    assert acked.status_code == 200
    poll.join(10)
    assert answer["at"] - acked_at < 0.1
    assert answer["response"].headers["Preference-Applied"] == "wait=5"
    assert of_type(answer["response"].json()["messages"], "op-re")[0]["operations"] == [op]


def test_a_held_long_poll_ends_when_its_client_disconnects(replicas: Replicas) -> None:
    alice = replicas.replica("alice")
    body = json.dumps({"messages": []}).encode()
    host, port = replicas.server.address.split(":")
    before = replicas.server.log().count('"POST /sync HTTP/1.1"')
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {alice.token}\r\nPrefer: wait=5\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.3)
    closed_at = time.monotonic()
    wait_for(lambda: replicas.server.log().count('"POST /sync HTTP/1.1"') > before, timeout=3)
    assert time.monotonic() - closed_at < 2.0


def test_a_silent_pull_replica_is_announced_gone_after_the_keepalive(replicas: Replicas) -> None:
    alice, carol = replicas.replica("alice"), replicas.replica("carol")
    a = replicas.join(alice)
    replicas.post(carol, [carol.presence_message({}), carol.sync_message()])
    a.receive_until("presence-changed")
    started = time.monotonic()
    offline = a.receive_until("presence-offline", timeout=5)[-1]
    assert offline["userId"] == "carol"
    assert KEEPALIVE * 0.5 < time.monotonic() - started < KEEPALIVE + 1.5


def test_preload_keeps_sqlite_out_of_the_master_and_the_worker_responsive(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    server = start("gunicorn", tmp_path, preload=True)
    try:
        r = Replicas(make_app, server, "preload")
        alice, carol = r.replica("alice"), r.replica("carol")
        a = r.join(alice)
        r.post(carol, [carol.presence_message({}), carol.sync_message()])
        # the sweeper waits in the worker meanwhile; heartbeats must not stall behind it
        worst = 0.0
        deadline = time.monotonic() + 2 * KEEPALIVE + 0.5
        offline = []
        while time.monotonic() < deadline:
            sent = time.monotonic()
            offline += of_type(heartbeat(a, alice), "presence-offline")
            worst = max(worst, time.monotonic() - sent)
            time.sleep(0.05)
        assert worst < 0.5
        assert [m["userId"] for m in offline] == ["carol"]
        database = str(tmp_path / "verdant.sqlite3")

        def opened_by(pid: int) -> bool:
            fds = Path(f"/proc/{pid}/fd")
            return any(os.path.realpath(fd).startswith(database) for fd in fds.iterdir())

        assert not opened_by(server.process.pid)
        assert all(opened_by(pid) for pid in server.worker_pids())
        a.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_the_flask_run_dev_server_serves_websockets_and_long_poll(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    server = start("flask", tmp_path)
    try:
        r = Replicas(make_app, server, "dev")
        alice, bob = r.replica("alice"), r.replica("bob")
        a = r.join(alice)
        r.post(bob, [bob.sync_message()])
        listening: dict[str, requests.Response] = {}
        poll = threading.Thread(
            target=lambda: listening.update(r=r.post(bob, [], {"Prefer": "wait=5"}))
        )
        poll.start()
        time.sleep(0.3)
        op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
        a.send(alice.op_message(op))
        a.receive_until("server-ack")
        poll.join(5)
        assert of_type(listening["r"].json()["messages"], "op-re")[0]["operations"] == [op]
        a.close()
    finally:
        server.stop()
