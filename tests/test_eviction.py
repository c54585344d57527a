"""Eviction wipes a library under its lock, closes its connections, and the library comes back."""

from __future__ import annotations

from collections.abc import Callable

import websocket
from flask import Flask

from flask_verdant.testing import VerdantTestClient

from .realtime_helpers import Closed, Socket, serving, sync_server


def test_eviction_closes_the_librarys_websockets_and_keeps_others(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    other = VerdantTestClient(app, library_id="other", user_id="olga")
    alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {}})])
    with serving(app) as address:
        evicted = Socket(address, alice.token)
        kept = Socket(address, other.token)
        evicted.send(alice.sync_message(since="x", resync_all=False))
        evicted.receive_until("sync-resp")
        kept.send(other.sync_message())
        kept.receive_until("sync-resp")
        with app.app_context():
            sync_server(app).evict_library("lib")
        try:
            message = evicted.receive()
        except (Closed, websocket.WebSocketConnectionClosedException):
            message = None
        assert message is None, f"the evicted library's socket got {message} instead of a close"
        kept.send({"type": "heartbeat", "replicaId": other.replica_id})
        assert kept.receive()["type"] == "heartbeat-response"
        assert sync_server(app).library_info("lib")["operationsCount"] == 0
