"""Presence is bounded at intake (issue 12, finding 4): one connection speaks for its own
replica, a replica's presence has a size limit, a user a number of present replicas and an
update rate; and ``get_library_presence`` shows what peers see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_verdant.presence import PresenceRegistry
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import Harness, sync_server, wait_for
from .test_websocket import client, join


def replica(app: Flask, user: str = "mallory", **kw: Any) -> VerdantTestClient:
    return VerdantTestClient(app, library_id="lib", user_id=user, **kw)


def test_a_websocket_speaks_only_for_its_own_replica(harness: Harness) -> None:
    live = harness.serve()
    mallory = client(live, "mallory")
    socket = harness.connect(live, mallory)
    join(socket, mallory)
    made_up = replica(live[0])
    socket.send(made_up.presence_message({"x": 1}))
    assert socket.close_code() == 1008
    assert set(sync_server(live[0]).library_presence("lib")) <= {"mallory"}
    wait_for(lambda: "mallory" not in sync_server(live[0]).library_presence("lib"))


def test_many_made_up_replicas_of_a_megabyte_are_refused(harness: Harness) -> None:
    """The finding: 60 x 1 MB of presence stayed resident while the socket was open."""
    live = harness.serve()
    server = sync_server(live[0])
    mallory = client(live, "mallory")
    socket = harness.connect(live, mallory)
    socket.send(mallory.presence_message({"blob": "x" * 1_000_000}))
    assert socket.close_code() == 1009
    answers = [
        replica(live[0]).post({"messages": [replica(live[0]).presence_message({"n": n})]})
        for n in range(60)
    ]
    assert [a.status_code for a in answers].count(200) == server.settings.max_presence_replicas
    assert {a.get_json()["code"] for a in answers if a.status_code != 200} <= {4030, 4290}
    assert present(server) == server.settings.max_presence_replicas
    big = replica(live[0]).post(
        {"messages": [replica(live[0]).presence_message({"blob": "x" * 1_000_000})]}
    )
    assert big.status_code == 413


def test_a_users_presence_slots_come_back_when_replicas_leave(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app({"VERDANT_MAX_PRESENCE_REPLICAS": 2, "VERDANT_PRESENCE_KEEPALIVE_SECONDS": 0.3})
    first, second, third = (replica(app) for _ in range(3))
    first.update_presence({"n": 1})
    second.update_presence({"n": 2})
    assert third.post({"messages": [third.presence_message({"n": 3})]}).status_code == 403
    first.update_presence({"n": 1.5})  # a present replica may always update
    # Another user is not affected.
    assert (
        replica(app, "alice")
        .post({"messages": [replica(app, "alice").presence_message({})]})
        .status_code
        == 200
    )
    wait_for(
        lambda: third.post({"messages": [third.presence_message({"n": 3})]}).status_code == 200
    )


def test_presence_updates_are_rate_limited_per_user(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_PRESENCE_UPDATES_PER_SECOND": 0.5})
    mallory = replica(app)
    statuses = [
        mallory.post({"messages": [mallory.presence_message({"n": n})]}).status_code
        for n in range(3)
    ]
    assert statuses == [200, 429, 429]
    # Other messages of the same user are not limited.
    assert of_type(mallory.sync(), "sync-resp")


def test_a_rate_limited_update_on_a_websocket_is_dropped_not_fatal(harness: Harness) -> None:
    live = harness.serve({"VERDANT_PRESENCE_UPDATES_PER_SECOND": 1})
    alice = client(live, "alice")
    socket = harness.connect(live, alice)
    join(socket, alice, {"n": 0})
    socket.send(alice.presence_message({"n": 1}))
    socket.send(alice.presence_message({"n": 2}))
    socket.send(alice.presence_message({"n": 3}))
    socket.send({"type": "heartbeat", "replicaId": alice.replica_id})
    received = socket.receive_until("heartbeat-response")
    changes = [m["userInfo"]["presence"] for m in of_type(received, "presence-changed")]
    assert changes == [{"n": 1}]
    assert sync_server(live[0]).library_presence("lib")["alice"]["presence"] == {"n": 1}


def test_library_presence_is_what_peers_see(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    alice, bob = replica(app, "alice"), replica(app, "bob")
    alice.update_presence({"cursor": 1})
    phone = replica(app, "alice")
    phone.update_presence({"cursor": 2})
    peers = of_type(bob.sync(), "sync-resp")[0]["peerPresence"]
    with app.app_context():
        assert app.extensions["verdant"].library_presence("lib") == peers
    assert peers["alice"]["presence"] == {"cursor": 2}


def present(server: SyncServer) -> int:
    """How many replicas the (in-memory, one worker) presence registry holds."""
    registry = server.presence
    assert isinstance(registry, PresenceRegistry)
    return len(registry)
