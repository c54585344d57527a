"""A replica id belongs for good to the first user the server sees it from (issue 12, finding 5).

Peers see each other's replica ids in presence, so a binding that a first sync creates, or that
eviction clears, would let another user claim an id and lock its owner out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from flask import Flask

from flask_verdant import Verdant
from flask_verdant.storage.schema import MIGRATIONS
from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import SECRET
from .realtime_helpers import Socket, serving


def pair(app: Flask) -> tuple[VerdantTestClient, VerdantTestClient]:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    mallory = VerdantTestClient(
        app, library_id="lib", user_id="mallory", replica_id=alice.replica_id
    )
    return alice, mallory


def assert_owner_keeps_it(alice: VerdantTestClient, mallory: VerdantTestClient) -> None:
    for message in (
        mallory.sync_message(),
        mallory.presence_message({"me": "mallory"}),
        {"type": "heartbeat", "replicaId": mallory.replica_id},
    ):
        response = mallory.post({"messages": [message]})
        assert response.status_code == 403
        assert response.get_json()["code"] == 4030
    assert of_type(alice.sync(), "sync-resp")


def test_presence_before_the_first_sync_binds_the_replica(app: Flask) -> None:
    alice, mallory = pair(app)
    alice.update_presence({"me": "alice"})
    assert_owner_keeps_it(alice, mallory)


def test_a_heartbeat_binds_the_replica(app: Flask) -> None:
    alice, mallory = pair(app)
    alice.heartbeat()
    assert_owner_keeps_it(alice, mallory)


def test_the_binding_outlives_evict_user(app: Flask) -> None:
    alice, mallory = pair(app)
    alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {}})])
    with app.app_context():
        assert app.extensions["verdant"].evict_user("lib", "alice") == 1
    assert_owner_keeps_it(alice, mallory)


def test_the_binding_outlives_evict_library(app: Flask) -> None:
    alice, mallory = pair(app)
    alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {}})])
    with app.app_context():
        app.extensions["verdant"].evict_library("lib")
    assert_owner_keeps_it(alice, mallory)


def test_the_same_id_in_another_library_is_a_different_replica(app: Flask) -> None:
    alice, _ = pair(app)
    alice.sync()
    other = VerdantTestClient(
        app, library_id="other", user_id="mallory", replica_id=alice.replica_id
    )
    assert of_type(other.sync(), "sync-resp")


def test_a_squatter_on_a_websocket_is_closed_with_1008_after_eviction(app: Flask) -> None:
    alice, mallory = pair(app)
    alice.sync()
    with app.app_context():
        app.extensions["verdant"].evict_library("lib")
    with serving(app) as address:
        socket = Socket(address, mallory.token)
        try:
            socket.send(mallory.presence_message({"me": "mallory"}))
            assert socket.close_code() == 1008
        finally:
            socket.close()


def test_an_existing_database_keeps_its_replicas_owners(database_file: str) -> None:
    """The migration binds the replicas that a database from before it already knows."""
    connection = sqlite3.connect(database_file)
    for statements in MIGRATIONS[:4]:
        for statement in statements:
            connection.execute(statement)
    connection.execute("PRAGMA user_version = 4")
    connection.execute(
        "INSERT INTO replicas (libraryId, id, userId) VALUES ('lib', 'old-replica', 'alice')"
    )
    connection.commit()
    connection.close()
    app = Flask("migrated")
    Verdant(app, database_file=database_file, token_secret=SECRET)
    alice = VerdantTestClient(app, library_id="lib", user_id="alice", replica_id="old-replica")
    mallory = VerdantTestClient(app, library_id="lib", user_id="mallory", replica_id="old-replica")
    with app.app_context():
        app.extensions["verdant"].evict_user("lib", "alice")
    assert_owner_keeps_it(alice, mallory)


def test_a_user_cannot_bind_replica_ids_without_end(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_MAX_REPLICAS_PER_USER": 3})
    mine = [VerdantTestClient(app, library_id="lib", user_id="mallory") for _ in range(4)]
    for replica in mine[:3]:
        replica.heartbeat()
    refused = mine[3].post({"messages": [mine[3].presence_message({})]})
    assert refused.status_code == 403 and refused.get_json()["code"] == 4030
    # Known ids keep working, and other users and libraries are not limited by mallory's.
    assert of_type(mine[0].sync(), "sync-resp")
    assert of_type(VerdantTestClient(app, library_id="lib", user_id="alice").sync(), "sync-resp")
    other = VerdantTestClient(app, library_id="other", user_id="mallory")
    assert of_type(other.sync(), "sync-resp")
