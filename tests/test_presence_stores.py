"""The presence rules, held to the same contract in memory (one worker) and in Redis (several)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import redis

from flask_verdant.presence import Departure, PresenceRegistry, PresenceStore
from flask_verdant.redis_presence import RedisPresence

from .redis_server import RedisServer

MakeStore = Callable[[str], PresenceStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """Stores that share one presence: in memory there is only one; in Redis, one per worker."""
    if request.param == "memory":
        registry = PresenceRegistry(keepalive_seconds=30)
        yield lambda worker: registry
        return
    server: RedisServer = request.getfixturevalue("shared_redis")
    client = redis.Redis(port=server.port)
    namespace = f"test-{secrets.token_hex(4)}"
    yield lambda worker: RedisPresence(client, namespace, 30, lambda: worker)
    client.close()


def with_entries(store: PresenceStore, *entries: tuple[str, str, str], now: float = 0) -> None:
    for library, replica, user in entries:
        store.update(library, replica, user, {"presence": {"at": replica}}, {"id": user}, now)


def test_a_user_leaves_only_with_their_last_replica(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "phone", "bob"), ("lib", "laptop", "bob"), now=0)
    store.refresh("lib", "laptop", now=20)
    assert store.sweep(now=31) == []
    assert set(store.peers("lib")) == {"bob"}
    assert store.sweep(now=51) == [Departure("lib", "laptop", "bob")]
    assert store.peers("lib") == {}


def test_expiry_is_per_library_and_reported_once(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("a", "r1", "alice"), ("b", "r2", "bob"), now=0)
    store.refresh("b", "r2", now=20)
    assert store.sweep(now=31) == [Departure("a", "r1", "alice")]
    assert store.sweep(now=31) == []
    assert store.peers("b")["bob"] == {
        "id": "bob",
        "presence": {"at": "r2"},
        "profile": {"id": "bob"},
        "replicaId": "r2",
        "internal": {},
    }


def test_peers_show_each_users_latest_replica(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "phone", "bob"), now=1)
    with_entries(store, ("lib", "laptop", "bob"), now=2)
    assert store.peers("lib")["bob"]["replicaId"] == "laptop"


def test_a_closed_connection_releases_only_what_it_still_owns(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "r1", "alice"), ("lib", "r2", "bob"))
    store.claim("lib", "r1", "w:1", 0)
    store.claim("lib", "r2", "w:1", 0)
    store.claim("lib", "r2", "w:2", 0)  # bob reconnected before the old socket was noticed
    assert store.release("lib", "w:1") == [Departure("lib", "r1", "alice")]
    assert set(store.peers("lib")) == {"bob"}
    assert store.release("lib", "w:2") == [Departure("lib", "r2", "bob")]


def test_a_replica_held_by_a_socket_does_not_expire(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "r1", "alice"), now=0)
    store.claim("lib", "r1", "w:1", 0)
    assert store.sweep(now=1000) == []
    store.claim("lib", "r1", None, 0)  # it went on over HTTP: the keepalive applies again
    assert store.sweep(now=1000) == [Departure("lib", "r1", "alice")]


def test_clear_forgets_a_library(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "r1", "alice"), ("other", "r2", "bob"))
    store.clear("lib")
    assert store.peers("lib") == {}
    assert store.sweep(now=1000) == [Departure("other", "r2", "bob")]


def test_workers_racing_to_expire_a_replica_announce_it_once(shared_redis: RedisServer) -> None:
    client = redis.Redis(port=shared_redis.port)
    namespace = f"test-{secrets.token_hex(4)}"
    first, second = (RedisPresence(client, namespace, 30, partial(str, w)) for w in ("a", "b"))
    with_entries(first, *((f"lib{i}", f"r{i}", f"user{i}") for i in range(20)), now=0)
    departures = first.sweep(now=100) + second.sweep(now=100)
    assert sorted(d.replica_id for d in departures) == sorted(f"r{i}" for i in range(20))


def test_what_a_killed_worker_held_is_reaped_once_by_the_others(
    shared_redis: RedisServer,
) -> None:
    client = redis.Redis(port=shared_redis.port)
    namespace = f"test-{secrets.token_hex(4)}"
    dead, alive, other = (
        RedisPresence(client, namespace, 30, partial(str, w), dead_after_seconds=5)
        for w in ("dead", "alive", "other")
    )
    with_entries(dead, ("lib", "r1", "alice"), ("lib", "r2", "bob"), now=0)
    dead.claim("lib", "r1", "dead:1", 0)
    alive.update("lib", "r2", "bob", {"presence": {}}, {}, 0)
    alive.claim("lib", "r2", "alive:7", 0)
    assert dead.sweep(now=1) == []  # it beats, once, then is killed
    assert alive.sweep(now=3) == []  # not dead yet: it beat 2 s ago
    departures = alive.sweep(now=10) + other.sweep(now=10)
    assert departures == [Departure("lib", "r1", "alice")]
    assert set(alive.peers("lib")) == {"bob"}


def test_a_departure_is_published_by_the_script_that_removes_it(
    shared_redis: RedisServer,
) -> None:
    """Removal and its presence-offline are one step in Redis, so the offline of an old
    connection can never reach peers after the same replica's next arrival."""
    client = redis.Redis(port=shared_redis.port)
    namespace = f"test-{secrets.token_hex(4)}"
    listener = client.pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe(f"{namespace}:bus")
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    workers = [
        RedisPresence(client, namespace, 30, partial(str, w), channel=f"{namespace}:bus")
        for w in ("a", "b")
    ]
    with_entries(workers[0], ("lib", "r1", "alice"), now=0)
    workers[0].claim("lib", "r1", "a:1", 0)
    assert workers[1].release("lib", "a:1") == [Departure("lib", "r1", "alice", announced=True)]
    assert workers[0].release("lib", "a:1") == []
    message = listener.get_message(timeout=2)
    header, _, payload = message["data"].decode().partition("\n")
    assert json.loads(header) == ["D", "lib", None, None, None]
    assert json.loads(payload) == Departure("lib", "r1", "alice").message()
    assert listener.get_message(timeout=0.3) is None
    listener.close()


def test_updates_merge_presence_and_internal_as_store_5_expects(make_store: MakeStore) -> None:
    store = make_store("w")
    store.update("lib", "r1", "alice", {"presence": {"a": 1}, "internal": {"viewId": "v"}}, {}, 0)
    merged = store.update("lib", "r1", "alice", {"internal": {"viewId": "w"}}, {}, 1)
    assert merged["presence"] == {"a": 1} and merged["internal"] == {"viewId": "w"}
    assert store.peers("lib")["alice"]["internal"] == {"viewId": "w"}


def test_a_disconnecting_replica_leaves_at_once(make_store: MakeStore) -> None:
    store = make_store("w")
    with_entries(store, ("lib", "r1", "alice"))
    store.claim("lib", "r1", "w:1", 0)
    departure = store.remove("lib", "r1", "w:1")
    assert departure is not None and (departure.library_id, departure.user_id) == ("lib", "alice")
    assert store.remove("lib", "r1", "w:1") is None
    assert store.peers("lib") == {}


def test_a_disconnecting_from_a_connection_the_replica_left_is_stale(
    make_store: MakeStore,
) -> None:
    """The replica reconnected and spoke on its new socket before the old one's last message
    was handled: it is still here."""
    store = make_store("w")
    with_entries(store, ("lib", "r1", "alice"))
    store.claim("lib", "r1", "w:1", 0)
    store.claim("lib", "r1", "w:2", 1)
    assert store.remove("lib", "r1", "w:1") is None
    assert store.remove("lib", "r1", None) is None
    assert set(store.peers("lib")) == {"alice"}
    store.claim("lib", "r1", None, 2)  # then it polled over HTTP
    assert store.remove("lib", "r1", "w:2") is None
    assert store.remove("lib", "r1", None) is not None


def test_refreshes_reach_redis_at_most_once_a_third_of_the_keepalive(
    shared_redis: RedisServer,
) -> None:
    """Every message refreshes its replica; Redis hears of it only when it matters."""
    client = redis.Redis(port=shared_redis.port)
    namespace = f"test-{secrets.token_hex(4)}"
    store = RedisPresence(client, namespace, 30, partial(str, "w"))
    with_entries(store, ("lib", "r1", "alice"), now=0)
    expiry = f"{namespace}:presence:expiry"
    member = json.dumps(["lib", "r1"])
    store.refresh("lib", "r1", now=1)
    assert client.zscore(expiry, member) == 31
    store.refresh("lib", "r1", now=5)  # within a third of the keepalive: not sent
    assert client.zscore(expiry, member) == 31
    store.refresh("lib", "r1", now=12)
    assert client.zscore(expiry, member) == 42
    assert store.sweep(now=41) == []
    assert store.sweep(now=43) == [Departure("lib", "r1", "alice", announced=False)]
