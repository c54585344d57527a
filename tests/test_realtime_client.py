"""The in-process realtime test client: a host app's realtime tests need no server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from flask_verdant import ErrorCode, Verdant, VerdantError
from flask_verdant.testing import VerdantTestClient, of_type


def test_a_realtime_session_gets_the_broadcasts_of_others(app: Flask) -> None:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    with alice.connect() as a, bob.connect() as b:
        a.emit(alice.presence_message({"at": "home"}), alice.sync_message())
        assert of_type(a.get_received(), "sync-resp")
        b.emit(bob.presence_message({}), bob.sync_message())
        b.get_received()
        changed = of_type(a.get_received(), "presence-changed")
        assert changed[-1]["userInfo"]["id"] == "bob"
        b.emit(bob.op_message(bob.operation("items/x", {"op": "set", "name": "n", "value": 1})))
        assert of_type(b.get_received(), "server-ack")
        relayed = of_type(a.get_received(), "op-re")
        assert relayed[0]["operations"][0]["oid"] == "items/x"
        # an HTTP replica's write reaches the session too
        carol = VerdantTestClient(app, library_id="lib", user_id="carol")
        carol.sync()
        a.get_received()
        carol.op(carol.operation("items/y", {"op": "initialize", "value": {}}))
        assert of_type(a.get_received(), "op-re")[0]["replicaId"] == carol.replica_id


def test_leaving_announces_the_user_once_and_eviction_closes_the_session(
    app: Flask,
) -> None:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    a, b = alice.connect(), bob.connect()
    a.emit(alice.presence_message({}), alice.sync_message())
    b.emit(bob.presence_message({}), bob.sync_message())
    a.get_received()
    b.disconnect()
    # within a second of alice's sync-resp, departures reach her when that second is over
    # (docs/protocol.md, "Several processes and hosts": presence after a sync answer)
    deadline = time.monotonic() + 5
    offline: list[dict[str, Any]] = []
    while not offline and time.monotonic() < deadline:
        offline = of_type(a.get_received(), "presence-offline")
        time.sleep(0.02)
    assert [m["userId"] for m in offline] == ["bob"]
    with app.app_context():
        Verdant().evict_library("lib")
    assert a.closed_by_server and not a.open
    a.disconnect()


def test_a_refused_token_cannot_open_a_session(app: Flask) -> None:
    forged = VerdantTestClient(app, library_id="lib", user_id="alice")
    forged.token = "not-a-token"
    with pytest.raises(VerdantError) as refused:
        forged.connect()
    assert refused.value.code == ErrorCode.INVALID_TOKEN
