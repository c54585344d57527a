"""A property-based fuzzer: hostile input on every transport never hurts the server or others.

Hypothesis generates batches of every message type (well-formed ones with hostile values, and
malformed ones), raw frames and file requests, and sends them as a user with a valid token for
library ``fuzz``. Invariants, checked after every example:

- never a server error: no 5xx, no close 1011, nothing logged at ERROR;
- never an effect on library ``victim``: its rows and the messages its connection receives;
- a peer in the fuzzed library itself (``bob``) is still answered, whatever was accepted;
- and at the end ``PRAGMA integrity_check`` is ok and compaction of the fuzzed library runs.

The budget is small by default (a few tens of seconds in CI); ``VERDANT_FUZZ_EXAMPLES=5000``
runs a longer search.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_verdant import LocalFileStorage, ReplicaType
from flask_verdant.presence import PresenceRegistry
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import Closed, Socket, serving, sync_server, wait_for

EXAMPLES = int(os.environ.get("VERDANT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A socket closed for bad input makes its next refusal wait a second (``RefusalThrottle``).
SOCKET_FUZZ = settings(FUZZ, max_examples=EXAMPLES // 10 or 30)


class Deep:
    """A value nested ``levels`` deep, written as text (``json.dumps`` would recurse)."""

    def __init__(self, levels: int) -> None:
        self.levels = levels

    def __repr__(self) -> str:
        return f"Deep({self.levels})"


def encode(value: Any, ascii: bool = True) -> str:
    """JSON text as a hostile client may write it: lone surrogates, NaN, 1e400, deep values.

    ``ascii=False`` leaves lone surrogates raw, for bodies that are not even UTF-8.
    """
    if isinstance(value, Deep):
        return '{"a":' * value.levels + "0" + "}" * value.levels
    if isinstance(value, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=ascii)}:{encode(v, ascii)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, ascii) for v in value) + "]"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "1e400" if value > 0 else "-1e400"
    return json.dumps(value, ensure_ascii=ascii)


# -- strategies -----------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\ud800", "a\udfff", "items/a", "x" * 2000, "\x00", "\U0001f600"]),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    texts,
    st.integers(min_value=50, max_value=1200).map(Deep),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)

REPLICAS = ["mine", "mine-2", "victims-replica", "\ud800"]
replica_ids = st.one_of(st.sampled_from(REPLICAS), texts, values)
oids = st.one_of(st.sampled_from(["items/a", "items/b", "items/a:nested", "lists/x"]), texts)
timestamps = st.one_of(
    st.sampled_from(["0001lz0000000000abcdefg", "0001m00000000000abcdefg", "0"]), texts
)
patches = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["initialize", "set", "remove", "delete", "list-push", "x"])},
        optional={"value": values, "name": texts, "index": numbers, "only": texts},
    ),
    values,
)
operations = st.fixed_dictionaries(
    {"oid": oids, "timestamp": timestamps, "data": patches}, optional={"authz": values}
)
baselines = st.fixed_dictionaries(
    {"oid": oids, "timestamp": timestamps}, optional={"snapshot": values}
)


def message(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.just(kind), "replicaId": replica_ids},
        optional={"timestamp": timestamps, **fields},
    )


messages = st.one_of(
    message(
        "sync",
        operations=st.lists(operations, max_size=3) | values,
        baselines=st.lists(baselines, max_size=2) | values,
        since=st.none() | timestamps,
        resyncAll=st.booleans() | values,
        schemaVersion=numbers,
    ),
    message("op", operations=st.lists(operations, max_size=3) | values),
    message("ack", nonce=texts | st.sampled_from(["MQ==", "OTk5OTk5OTk5OQ=="])),
    message("heartbeat"),
    message("presence-update", presence=values),
    message("sync-ack"),
    message("launch-missiles"),
    values,
)
bodies = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(messages, max_size=4)}),
    values,
)


# -- the world: a victim library that must not notice anything ----------------------------------


class Inbox:
    """A connection registered in the victim library: it must receive nothing."""

    def __init__(self) -> None:
        self.payloads: list[str] = []

    def send(self, payload: str) -> None:
        self.payloads.append(payload)

    def close(self) -> None:
        self.payloads.append("<closed>")


class World:
    def __init__(self, app: Flask, database_file: str) -> None:
        self.app = app
        self.database_file = database_file
        alice = VerdantTestClient(
            app, library_id="victim", user_id="alice", replica_id="victims-replica"
        )
        alice.update_presence({"here": True})
        alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {"n": 1}})])
        self.victim = alice
        self.inbox = Inbox()
        sync_server(app).hub.register("victim", "watcher", self.inbox, lasting=False)
        self.victim_rows = self.rows("victim")
        self.victim_presence = sync_server(app).library_presence("victim")
        self.tokens = {
            kind: VerdantTestClient(app, library_id="fuzz", user_id="mallory", type=kind).token
            for kind in (ReplicaType.REALTIME, ReplicaType.READ_ONLY_PULL)
        }
        self.peer = VerdantTestClient(app, library_id="fuzz", user_id="bob", replica_id="bobs")
        self.peer.sync()

    def check_peer(self) -> None:
        """Whatever mallory got accepted, bob's sync is answered (every presence included)."""
        response = self.peer.post(
            {"messages": [self.peer.sync_message(since="x", resync_all=False)]}
        )
        assert response.status_code == 200, response.get_data()[:300]
        assert of_type(response.get_json()["messages"], "sync-resp")

    def rows(self, library_id: str) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(self.database_file)
        try:
            found: list[tuple[Any, ...]] = []
            for table, column in (
                ("libraries", "id"),
                ("replicas", "libraryId"),
                ("operations", "libraryId"),
                ("baselines", "libraryId"),
                ("files", "libraryId"),
                ("replica_owners", "libraryId"),
            ):
                query = f"SELECT * FROM {table} WHERE {column} = ?"  # noqa: S608
                found += [(table, *row) for row in connection.execute(query, (library_id,))]
            return sorted(found, key=repr)
        finally:
            connection.close()

    def check_victim(self) -> None:
        assert self.inbox.payloads == []
        assert self.rows("victim") == self.victim_rows
        assert sync_server(self.app).library_presence("victim") == self.victim_presence

    def rebaseline(self) -> None:
        """After the victim itself spoke (its replica's lastSeen moves)."""
        self.inbox.payloads.clear()
        self.victim_rows = self.rows("victim")
        self.victim_presence = sync_server(self.app).library_presence("victim")

    def check_integrity(self) -> None:
        connection = sqlite3.connect(self.database_file)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            connection.close()
        server = sync_server(self.app)
        server.compact("fuzz")
        # Memory: presence holds at most the limit of mallory's replicas, and alice's.
        assert present(server) <= server.settings.max_presence_replicas + 1


@pytest.fixture
def world(make_app: Callable[..., Flask], database_file: str, tmp_path: Path) -> Iterator[World]:
    app = make_app(
        {
            "VERDANT_MAX_MESSAGE_BYTES": 256 * 1024,
            "VERDANT_MAX_FILE_BYTES": 4096,
            # The victim's presence (over HTTP) must outlast a long run, or it leaves.
            "VERDANT_PRESENCE_KEEPALIVE_SECONDS": 24 * 3600,
        },
        file_storage=LocalFileStorage(str(tmp_path / "files")),
    )
    world = World(app, database_file)
    yield world
    world.check_integrity()
    sync_server(app).close()


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="flask_verdant"):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def assert_json_answer(response: Any, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/json"
    body = response.get_json()
    if response.status_code != 200:
        assert isinstance(body["code"], int) and body["message"]


# -- HTTP -----------------------------------------------------------------------------------------


@FUZZ
@given(body=bodies, read_only=st.booleans(), raw=st.booleans())
def test_http_sync_never_fails_and_never_touches_another_library(
    world: World, no_errors_logged: None, body: Any, read_only: bool, raw: bool
) -> None:
    token = world.tokens[ReplicaType.READ_ONLY_PULL if read_only else ReplicaType.REALTIME]
    data = encode(body, ascii=not raw).encode("utf-8", "surrogatepass")
    response = world.app.test_client().post(
        "/sync",
        data=data,
        headers={"Authorization": f"Bearer {token}"},
        content_type="application/json",
    )
    assert_json_answer(response, {200, 400, 403, 413, 429})
    world.check_victim()
    world.check_peer()


@FUZZ
@given(
    file_id=st.one_of(st.sampled_from(["f1", "f2", "../x", "a%2Fb", ""]), st.text(max_size=20)),
    filename=st.one_of(
        st.sampled_from(["a.png", "../../etc", "", ".", "x\x00y"]), st.text(max_size=20)
    ),
    content=st.binary(max_size=6000),
    content_type=st.sampled_from(["image/png", "", "text/html", "\u00e9/\u00e9"]),
    multipart=st.booleans(),
    read_only=st.booleans(),
    method=st.sampled_from(["POST", "GET", "GET-DATA"]),
)
def test_file_routes_never_fail(
    world: World,
    no_errors_logged: None,
    file_id: str,
    filename: str,
    content: bytes,
    content_type: str,
    multipart: bool,
    read_only: bool,
    method: str,
) -> None:
    token = world.tokens[ReplicaType.READ_ONLY_PULL if read_only else ReplicaType.REALTIME]
    client = world.app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/sync/files/{file_id}"
    if method == "GET":
        response = client.get(path, headers=headers)
    elif method == "GET-DATA":
        response = client.get(f"{path}/{filename}/{content_type}")
    elif multipart:
        response = client.post(
            path, headers=headers, data={"file": (io.BytesIO(content), filename, content_type)}
        )
    else:
        response = client.post(path, headers=headers, data=content, content_type=content_type)
    assert response.status_code < 500, response.data[:300]
    world.check_victim()


# -- websockets ------------------------------------------------------------------------------------


frames = st.one_of(
    messages.map(encode),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["", "{", "[]", "null", '"\\ud800"', '{"type":"sync"}']),
)


@pytest.fixture
def live_world(world: World) -> Iterator[tuple[World, str, Socket, Socket]]:
    with serving(world.app) as address:
        peer = Socket(address, world.peer.token)
        peer.send(world.peer.sync_message())
        peer.receive_until("sync-resp")
        victim = Socket(address, world.victim.token)
        victim.send(world.victim.presence_message({"here": True}))
        victim.send(world.victim.sync_message(since="x", resync_all=False))
        victim.receive_until("sync-resp")
        wait_for(lambda: sync_server(world.app).library_presence("victim"))
        world.rebaseline()
        try:
            yield world, address, victim, peer
        finally:
            victim.close()
            peer.close()


@SOCKET_FUZZ
@given(batch=st.lists(frames, min_size=1, max_size=4))
def test_websocket_frames_never_fail_and_never_touch_another_library(
    live_world: tuple[World, str, Socket, Socket],
    no_errors_logged: None,
    batch: list[str | bytes],
) -> None:
    world, address, victim, peer = live_world
    socket = Socket(address, world.tokens[ReplicaType.REALTIME])
    try:
        # Frames, then a heartbeat as the last word: it is answered, or the socket was closed
        # with a code that blames the client.
        for frame in [*batch, '{"type":"heartbeat"}']:
            socket.send_raw(frame)
        socket.receive_until("heartbeat-response", timeout=5)
    except Closed as closed:
        assert closed.code in (1003, 1007, 1008, 1009), closed.code
    except (websocket.WebSocketException, OSError):
        pass  # closed under our feet while sending: its close code was read by nobody
    finally:
        socket.close()
    world.check_victim()
    # The victim's socket got nothing and still works.
    victim.send({"type": "heartbeat", "replicaId": world.victim.replica_id})
    assert [m["type"] for m in victim.receive_until("heartbeat-response")] == ["heartbeat-response"]
    # So does bob's, in the fuzzed library: whatever reached it, it is not silenced.
    peer.send({"type": "heartbeat", "replicaId": world.peer.replica_id})
    peer.receive_until("heartbeat-response")
    world.rebaseline()


def present(server: SyncServer) -> int:
    """How many replicas the (in-memory, one worker) presence registry holds."""
    registry = server.presence
    assert isinstance(registry, PresenceRegistry)
    return len(registry)
