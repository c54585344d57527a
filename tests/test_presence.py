"""Presence: the registry's bookkeeping, and the background sweeper that expires silent replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask

from flask_verdant import json_codec
from flask_verdant.hub import Hub
from flask_verdant.presence import Departure, PresenceRegistry, presence_kind
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import sync_server, wait_for


class Inbox:
    """A hub connection that keeps what it is sent, standing in for a websocket."""

    def __init__(self) -> None:
        self.payloads: list[str] = []

    def send(self, payload: str) -> None:
        self.payloads.append(payload)

    def close(self) -> None:
        """The hub's ``Connection`` protocol: closing a websocket stands-in has nothing to do."""

    def offline(self) -> list[str]:
        return [p for p in self.payloads if '"presence-offline"' in p]


def registry_with(*entries: tuple[str, str, str], now: float = 0.0) -> PresenceRegistry:
    registry = PresenceRegistry(keepalive_seconds=30)
    for library, replica, user in entries:
        registry.update(library, replica, user, {}, {"id": user}, now)
    return registry


def test_a_user_leaves_only_with_their_last_replica() -> None:
    registry = registry_with(("lib", "phone", "bob"), ("lib", "laptop", "bob"))
    assert registry.remove("lib", "phone", None) is None
    assert registry.remove("lib", "laptop", None) == Departure("lib", "laptop", "bob")
    assert registry.remove("lib", "laptop", None) is None
    assert len(registry) == 0


def test_expiry_is_per_library_and_reports_each_departure_once() -> None:
    registry = registry_with(("a", "r1", "alice"), ("b", "r2", "bob"), now=0)
    registry.refresh("b", "r2", now=20)
    assert registry.sweep(now=31) == [Departure("a", "r1", "alice")]
    assert registry.sweep(now=31) == []
    assert set(registry.peers("b")) == {"bob"}
    assert registry.peers("a") == {}


def test_a_closed_connection_releases_only_what_it_still_owns() -> None:
    old_socket, new_socket = "w:1", "w:2"
    registry = registry_with(("lib", "r1", "alice"), ("lib", "r2", "bob"))
    registry.claim("lib", "r1", old_socket, 0)
    registry.claim("lib", "r2", old_socket, 0)
    registry.claim("lib", "r2", new_socket, 0)  # bob reconnected before the old socket was noticed
    assert registry.release("lib", old_socket) == [Departure("lib", "r1", "alice")]
    assert set(registry.peers("lib")) == {"bob"}
    assert registry.release("lib", new_socket) == [Departure("lib", "r2", "bob")]


def test_a_replica_on_a_socket_stays_until_the_socket_closes() -> None:
    registry = registry_with(("lib", "r1", "alice"), now=0)
    registry.claim("lib", "r1", "w:1", 0)
    assert registry.sweep(now=1000) == []
    registry.claim("lib", "r1", None, 0)  # it went on over HTTP: the keepalive applies again
    assert registry.sweep(now=1000) == [Departure("lib", "r1", "alice")]


@pytest.fixture
def quick_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app({"VERDANT_PRESENCE_KEEPALIVE_SECONDS": 0.3})


def test_a_silent_pull_replica_is_announced_gone_once_after_its_keepalive(
    quick_app: Flask,
) -> None:
    server = sync_server(quick_app)
    watcher = Inbox()
    server.hub.register("lib", "watcher", watcher, lasting=False)
    try:
        alice = VerdantTestClient(quick_app, library_id="lib", user_id="alice")
        alice.send(alice.presence_message({}), alice.sync_message())
        started = time.monotonic()
        wait_for(watcher.offline, timeout=3)
        assert 0.25 < time.monotonic() - started < 1.5
        time.sleep(0.5)
        assert watcher.offline() == [
            f'{{"type":"presence-offline","replicaId":"{alice.replica_id}","userId":"alice"}}'
        ]
        assert server.library_presence("lib") == {}
    finally:
        server.close()


def test_messages_keep_a_replica_present(quick_app: Flask) -> None:
    server = sync_server(quick_app)
    try:
        alice = VerdantTestClient(quick_app, library_id="lib", user_id="alice")
        alice.update_presence({})
        for _ in range(8):
            time.sleep(0.1)
            alice.heartbeat()
        assert "alice" in server.library_presence("lib")
    finally:
        server.close()


def test_the_sweeper_stops_when_nobody_is_present_and_restarts_on_demand(
    quick_app: Flask,
) -> None:
    server = sync_server(quick_app)
    try:
        alice = VerdantTestClient(quick_app, library_id="lib", user_id="alice")
        alice.update_presence({})
        wait_for(lambda: server.library_presence("lib") == {}, timeout=3)
        wait_for(lambda: not server.sweeper.running, timeout=3)
        bob = VerdantTestClient(quick_app, library_id="lib", user_id="bob")
        mirrored = bob.update_presence({})
        assert of_type(mirrored, "presence-changed")
        assert server.sweeper.running
        wait_for(lambda: server.library_presence("lib") == {}, timeout=3)
    finally:
        server.close()


def test_updates_merge_over_the_replicas_entry_like_object_assign() -> None:
    registry = PresenceRegistry(keepalive_seconds=30)
    first = registry.update("lib", "r1", "alice", {"presence": {"x": 1}}, {"id": "alice"}, 0)
    assert first["internal"] == {}  # store 3.x sends none; 5.x clients read it on every peer
    registry.update("lib", "r1", "alice", {"internal": {"viewId": "v"}}, {"id": "alice"}, 1)
    merged = registry.update("lib", "r1", "alice", {"presence": {"y": 2}}, {"id": "alice"}, 2)
    assert merged["presence"] == {"y": 2}  # replaced whole, not merged deeply
    assert merged["internal"] == {"viewId": "v"}
    assert registry.peers("lib")["alice"] == merged


def offline_of(replica: str, user: str) -> str:
    return json_codec.dumps(Departure("lib", replica, user).message())


def changed_of(replica: str, user: str) -> str:
    info = {"id": user, "replicaId": replica, "presence": {}, "profile": {}, "internal": {}}
    return json_codec.dumps({"type": "presence-changed", "replicaId": replica, "userInfo": info})


def test_after_a_sync_resp_each_departure_reaches_the_connection_once() -> None:
    """Seen in the three-worker test: a departure broadcast right after a sync-resp, then the
    same departure again in the reconciliation a second later."""
    connection = Inbox()
    member = Hub(lambda: "w").register("lib", "alice", connection, lasting=True)
    generation = member.start_settling()
    member.send(changed_of("r-carol", "carol"))  # carol arrives after the sync-resp...
    member.send(offline_of("r-bob", "bob"))  # ...bob (shown in it) leaves: held back
    member.send(offline_of("r-carol", "carol"))  # and carol leaves: held back
    assert connection.payloads == [changed_of("r-carol", "carol")]
    told: list[dict[str, str]] = []

    def difference(peers: dict[str, str]) -> list[tuple[str, str]]:
        told.append(peers)
        return [(offline_of("r-bob", "bob"), "r-bob"), (offline_of("r-carol", "carol"), "r-carol")]

    member.settle(generation - 1, difference)  # an older sync-resp's settle does nothing
    assert told == []
    member.settle(generation, difference)
    assert told == [{"carol": "r-carol"}]
    member.send(offline_of("r-bob", "bob"))  # the same departure, still in flight: dropped
    member.send(changed_of("r-carol", "carol"))  # carol comes back...
    member.send(offline_of("r-carol", "carol"))  # ...and leaves again: a new departure
    assert [presence_kind(p)[0] for p in connection.payloads] == [
        "presence-changed",
        "presence-offline",
        "presence-offline",
        "presence-changed",
        "presence-offline",
    ]
