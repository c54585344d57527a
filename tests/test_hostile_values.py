"""Values the server could not store or encode again are refused before they are accepted.

Issue 12, findings 1 and 2: a presence holding a lone surrogate or nested a thousand levels
deep used to break every answer of its library (HTTP 500, silent websockets), and operations
holding such values, or a big integer next to ``1e400``, answered 500.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_verdant import json_codec
from flask_verdant.testing import VerdantTestClient, of_type
from flask_verdant.websocket_connection import SocketConnection

from .helpers import dump_database
from .realtime_helpers import Harness, sync_server, wait_for
from .test_websocket import client, join

SURROGATE = "\ud800"


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


DEEP = "@deep@"  # stands for a value 1,000 levels deep, which json.dumps cannot write


VERY_DEEP = "@very-deep@"


def deep_text(levels: int = 1000) -> str:
    return '{"a":' * levels + '"bottom"' + "}" * levels


@pytest.fixture
def seeded(make_app: Callable[..., Flask]) -> tuple[Flask, VerdantTestClient, VerdantTestClient]:
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {"n": 1}})])
    bob.sync()
    return app, alice, bob


def bad_messages(client: VerdantTestClient) -> dict[str, dict[str, Any]]:
    def op(value: Any, oid: str = "items/x") -> dict[str, Any]:
        return client.op_message(client.operation(oid, {"op": "initialize", "value": value}))

    return {
        "presence-surrogate": client.presence_message({"name": SURROGATE}),
        "presence-surrogate-key": client.presence_message({SURROGATE: 1}),
        "presence-deep": client.presence_message(DEEP),
        "presence-very-deep": client.presence_message(VERY_DEEP),
        "op-surrogate": op({"text": "ok" + SURROGATE}),
        "op-deep": op(DEEP),
        "op-big-integer-and-infinity": op({"big": 10**400, "inf": float("inf")}),
        "op-infinity": op({"inf": float("inf")}),
        "op-oid-surrogate": op({}, oid="items/" + SURROGATE),
        "replica-id-surrogate": {**op({}), "replicaId": "r" + SURROGATE},
        "replica-id-too-long": {**op({}), "replicaId": "r" * 5000},
        "sync-baseline-surrogate": client.sync_message(
            baselines=[
                {"oid": "items/b", "timestamp": client.clock.now(), "snapshot": {"t": SURROGATE}}
            ]
        ),
        "heartbeat-surrogate": {"type": "heartbeat", "replicaId": SURROGATE},
    }


def encode(message: dict[str, Any]) -> str:
    """``json.dumps`` writes inf as ``Infinity``; a client's 1e400 is what the server sees."""
    return (
        json.dumps(message)
        .replace("Infinity", "1e400")
        .replace(f'"{DEEP}"', deep_text())
        .replace(f'"{VERY_DEEP}"', deep_text(20_000))  # beyond every decoder's own limit
    )


BAD_CASES = [
    "presence-surrogate",
    "presence-surrogate-key",
    "presence-deep",
    "presence-very-deep",
    "op-surrogate",
    "op-deep",
    "op-big-integer-and-infinity",
    "op-infinity",
    "op-oid-surrogate",
    "replica-id-surrogate",
    "replica-id-too-long",
    "sync-baseline-surrogate",
    "heartbeat-surrogate",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_unkeepable_values_are_400_over_http_and_change_nothing(
    seeded: tuple[Flask, VerdantTestClient, VerdantTestClient], database_file: str, case: str
) -> None:
    app, alice, bob = seeded
    before = dump_database(database_file)
    body = '{"messages":[' + encode(bad_messages(alice)[case]) + "]}"
    response = alice.post(data=body)
    assert response.status_code == 400, response.text
    assert response.get_json()["code"] == 4000
    assert dump_database(database_file) == before
    # Nobody's answers are affected, the sender's included.
    for replica in (alice, bob):
        answer = replica.post({"messages": [replica.sync_message(since="x", resync_all=False)]})
        assert answer.status_code == 200
        assert of_type(answer.get_json()["messages"], "sync-resp")
    assert sync_server(app).library_presence("lib") == {}


def test_accepted_values_round_trip_exactly(
    seeded: tuple[Flask, VerdantTestClient, VerdantTestClient],
) -> None:
    """Large but representable numbers, astral characters and moderate depth are kept."""
    _, alice, bob = seeded
    value = {
        "big": 10**20,
        "small": -(2**70),
        "float": 1.5e300,
        "emoji": "\U0001f600",
        "deep": nested(40),
    }
    operation = alice.operation("items/y", {"op": "initialize", "value": value})
    alice.op(operation)
    received = of_type(bob.sync(since="x", resync_all=False), "sync-resp")[0]["operations"]
    assert {"op": "initialize", "value": value} in [o["data"] for o in received]


def test_depth_and_id_limits_are_settings(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_MAX_JSON_DEPTH": 5, "VERDANT_MAX_ID_CHARS": 40})
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    assert alice.post({"messages": [alice.presence_message(nested(3))]}).status_code == 200
    assert alice.post({"messages": [alice.presence_message(nested(5))]}).status_code == 400
    long_oid = alice.operation("items/" + "x" * 40, {"op": "initialize", "value": {}})
    assert alice.post({"messages": [alice.sync_message(operations=[long_oid])]}).status_code == 400


def test_a_bad_entry_that_got_in_anyway_does_not_break_others_answers(
    seeded: tuple[Flask, VerdantTestClient, VerdantTestClient],
) -> None:
    """The codec guarantee behind validation: encoding what the server holds cannot fail."""
    app, alice, bob = seeded
    sync_server(app).presence.update(
        "lib", "ghost", "ghost", {"presence": {"t": SURROGATE, "n": 10**400}}, None, 0.0
    )
    answer = bob.post({"messages": [bob.sync_message(since="x", resync_all=False)]})
    assert answer.status_code == 200
    peers = of_type(answer.get_json()["messages"], "sync-resp")[0]["peerPresence"]
    assert peers["ghost"]["presence"]["t"] == SURROGATE


def test_the_codec_always_produces_encodable_text() -> None:
    for value in (
        {"t": SURROGATE},
        {"big": 10**30, "inf": float("inf"), "nan": float("nan")},
        [SURROGATE, 2**64, float("-inf"), {"k": [1.5]}],
    ):
        text = json_codec.dumps(value)
        text.encode("utf-8")
        assert json.loads(text) is not None
    assert (
        json_codec.dumps({"big": 10**30, "inf": float("inf")})
        == '{"big":' + str(10**30) + ',"inf":null}'
    )


class ExplodingSocket:
    """A socket that takes nothing at once, and whose blocking write fails unexpectedly."""

    def __init__(self, real: socket.socket) -> None:
        self._real = real
        self.shut = False

    def fileno(self) -> int:
        return self._real.fileno()

    def send(self, data: bytes, flags: int = 0) -> int:
        return 0

    def sendall(self, data: bytes) -> None:
        raise RuntimeError("a failure the writer does not expect")

    def shutdown(self, how: int) -> None:
        self.shut = True


def test_a_writer_that_fails_for_any_reason_closes_its_socket() -> None:
    server_side, client_side = socket.socketpair()
    try:
        sock = ExplodingSocket(server_side)
        connection = SocketConnection(
            sock,  # type: ignore[arg-type]
            max_message_bytes=1 << 20,
            ping_seconds=0,
            queue_bytes=1 << 20,
            queue_size=100,
            stall_seconds=1.0,
        )
        connection.send('"\u00e9"')
        wait_for(lambda: sock.shut)
    finally:
        server_side.close()
        client_side.close()


# -- websockets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "presence", [{"name": SURROGATE}, DEEP, VERY_DEEP], ids=["surrogate", "deep", "very-deep"]
)
def test_a_bad_presence_on_a_websocket_closes_it_with_1007_and_others_carry_on(
    harness: Harness,
    presence: Any,
) -> None:
    live = harness.serve()
    alice, bob, mallory = (client(live, name) for name in ("alice", "bob", "mallory"))
    alice_socket = harness.connect(live, alice)
    join(alice_socket, alice)
    bob_socket = harness.connect(live, bob)
    join(bob_socket, bob)
    mallory_socket = harness.connect(live, mallory)
    mallory_socket.send_raw(encode(mallory.presence_message(presence)))
    assert mallory_socket.close_code() == 1007
    # The library's sockets still get each other's changes, and HTTP sync still answers.
    alice_socket.send(
        alice.op_message(alice.operation("items/z", {"op": "initialize", "value": {}}))
    )
    relayed = bob_socket.receive_until("op-re")
    assert relayed[-1]["operations"][0]["oid"] == "items/z"
    answer = mallory.post({"messages": [mallory.sync_message()]})
    assert answer.status_code == 200
    assert "mallory" not in sync_server(live[0]).library_presence("lib")


def test_a_bad_operation_on_a_websocket_closes_it_with_1007_and_stores_nothing(
    harness: Harness,
    database_file: str,
) -> None:
    live = harness.serve()
    alice = client(live, "alice")
    alice_socket = harness.connect(live, alice)
    join(alice_socket, alice)
    before = dump_database(database_file)
    bad = alice.op_message(
        alice.operation("items/q", {"op": "initialize", "value": {"x": 10**400, "y": float("inf")}})
    )
    alice_socket.send_raw(encode(bad))
    assert alice_socket.close_code() == 1007
    assert dump_database(database_file) == before
