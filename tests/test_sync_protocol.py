"""Protocol rules (docs/protocol.md, "Handling each message") through the HTTP transport."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_verdant import ReplicaType
from flask_verdant.messages import parse_message
from flask_verdant.testing import VerdantTestClient, of_type

Replica = Callable[..., VerdantTestClient]


def initialize(client: VerdantTestClient, doc_id: str, **fields: Any) -> dict[str, Any]:
    return client.operation(
        f"items/{doc_id}", {"op": "initialize", "value": {"id": doc_id, **fields}}
    )


def only(messages: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_type(messages, kind)
    assert len(found) == 1, messages
    return found[0]


def nonce_value(nonce: str) -> int:
    return int(json.loads(base64.b64decode(nonce)))


def info(app: Flask, library_id: str = "lib") -> dict[str, Any]:
    with app.app_context():
        result: dict[str, Any] = app.extensions["verdant"].library_info(library_id)
        return result


def test_first_sync_into_an_empty_library_stores_the_client_data(
    replica: Replica, app: Flask
) -> None:
    alice = replica("alice")
    response = only(alice.sync(operations=[initialize(alice, "a", title="hi")]), "sync-resp")
    assert response["overwriteLocalData"] is False
    assert response["operations"] == [] and response["baselines"] == []
    assert "ackThisNonce" not in response
    assert info(app)["operationsCount"] == 1


def test_newcomer_to_a_non_empty_library_gets_everything_and_overwrites(replica: Replica) -> None:
    alice, bob = replica("alice"), replica("bob")
    first = initialize(alice, "a", title="hi")
    alice.sync(operations=[first])
    bob_own = initialize(bob, "b", title="bob's")
    response = only(bob.sync(operations=[bob_own]), "sync-resp")
    assert response["overwriteLocalData"] is True
    assert response["operations"] == [first]
    assert nonce_value(response["ackThisNonce"]) == 1


def test_known_replica_with_history_in_an_empty_library_is_asked_for_it(replica: Replica) -> None:
    alice = replica("alice")
    messages = alice.sync(since="00010mwxkkp6v0000aaaaaaa", resync_all=False)
    assert messages == [{"type": "need-since", "since": None}]
    op = initialize(alice, "a", title="restored")
    response = only(alice.sync(operations=[op], since=None, resync_all=False), "sync-resp")
    assert response["overwriteLocalData"] is False


def test_reconnect_gets_what_others_wrote_since_its_ack(replica: Replica) -> None:
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[initialize(alice, "a", title="hi")])
    joined = only(bob.sync(), "sync-resp")
    bob.ack(nonce=joined["ackThisNonce"])
    edit = alice.operation("items/a", {"op": "set", "name": "title", "value": "changed"})
    alice.op(edit)
    response = only(bob.sync(since=joined["ackedTimestamp"], resync_all=False), "sync-resp")
    assert response["overwriteLocalData"] is False
    assert response["operations"] == [edit]
    assert nonce_value(response["ackThisNonce"]) == 2


def test_nonce_encodes_the_highest_server_order_sent(replica: Replica) -> None:
    writers = [replica(name) for name in ("zed", "amy", "kim")]
    writers[0].sync(operations=[initialize(writers[0], "z")])
    for writer in writers[1:]:
        only(writer.sync(), "sync-resp")
    for index, writer in enumerate(writers):
        writer.op(writer.operation(f"items/{index}", {"op": "initialize", "value": {}}))
    response = only(replica("newcomer").sync(), "sync-resp")
    orders = [nonce_value(response["ackThisNonce"])]
    assert orders == [4]
    # The newest document stays an operation (docs/protocol.md, "Initial documents as baselines").
    assert [op["oid"] for op in response["operations"]] == ["items/2"]
    assert sorted(b["oid"] for b in response["baselines"]) == ["items/0", "items/1", "items/z"]


def test_server_ack_echoes_the_op_message_timestamp_on_lasting_connections(
    replica: Replica, app: Flask
) -> None:
    alice = replica("alice")
    alice.sync()
    message = alice.op_message(initialize(alice, "a"))
    server = app.extensions["verdant"]
    sender = server.authenticate(alice.token)
    replies = [e.message for e in server.engine.handle(sender, parse_message(message))]
    assert only(replies, "server-ack")["timestamp"] == message["timestamp"]


def test_no_server_ack_over_http(replica: Replica) -> None:
    alice = replica("alice")
    alice.sync()
    assert of_type(alice.op(initialize(alice, "a")), "server-ack") == []


def test_empty_op_gets_no_reply(replica: Replica) -> None:
    alice = replica("alice")
    alice.sync()
    assert alice.op() == []


def test_resent_operations_are_stored_once(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    op = initialize(alice, "a")
    alice.sync(operations=[op])
    alice.op(op)
    alice.op(op)
    assert info(app)["operationsCount"] == 1
    assert info(app)["latestServerOrder"] == 1


def test_acked_logical_time_never_moves_back(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    alice.sync()
    late = alice.clock.now()
    early = "0001" + "0" * 20
    alice.ack(timestamp=late)
    alice.ack(timestamp=early)
    (record,) = info(app)["replicas"]
    assert record["ackedLogicalTime"] == late


def test_nonce_beyond_the_counter_is_capped(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    alice.sync(operations=[initialize(alice, "a")])
    alice.ack(nonce=base64.b64encode(b"999").decode())
    (record,) = info(app)["replicas"]
    assert record["ackedServerOrder"] == 1


def test_global_ack_is_broadcast_when_it_advances(replica: Replica) -> None:
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[initialize(alice, "a")])
    bob_join = only(bob.sync(), "sync-resp")
    first_ack = bob_join["globalAckTimestamp"]
    bob.ack(nonce=bob_join["ackThisNonce"])
    bob_seen = bob.clock.now()
    assert bob.ack(timestamp=bob_seen) == [], "alice still holds the global ack back"
    alice_seen = alice.clock.now()
    advanced = only(alice.ack(timestamp=alice_seen), "global-ack")["timestamp"]
    assert advanced == min(bob_seen, alice_seen) and advanced > first_ack
    assert alice.ack(timestamp="0001" + "0" * 20) == [], "an unchanged global ack is not resent"


def test_truant_replica_is_reset_with_the_complete_state(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(replica_truancy_minutes=0.0001)
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    alice.sync(operations=[initialize(alice, "a")])
    joined = only(bob.sync(), "sync-resp")
    bob.ack(nonce=joined["ackThisNonce"])
    alice.op(alice.operation("items/a", {"op": "set", "name": "x", "value": 1}))
    time.sleep(0.02)  # truancy is a wall-clock age; 0.0001 minutes is 6 ms
    response = only(bob.sync(since=joined["ackedTimestamp"], resync_all=False), "sync-resp")
    assert response["overwriteLocalData"] is True
    assert len(response["operations"]) == 2


def test_read_only_replica_may_pull_but_not_write(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    alice.sync(operations=[initialize(alice, "a")])
    viewer = replica("viewer", type=ReplicaType.READ_ONLY_PULL)
    response = only(viewer.sync(), "sync-resp")
    assert len(response["operations"]) == 1
    assert viewer.op(initialize(viewer, "v")) == [{"type": "forbidden"}]
    assert info(app)["operationsCount"] == 1


def test_read_only_replica_never_fills_an_empty_library(replica: Replica, app: Flask) -> None:
    viewer = replica("viewer", type=ReplicaType.READ_ONLY_REALTIME)
    response = only(viewer.sync(operations=[initialize(viewer, "v")]), "sync-resp")
    assert response["operations"] == []
    assert info(app)["operationsCount"] == 0


def test_presence_is_mirrored_and_listed_with_the_trusted_profile(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(profiles=lambda user_id: {"id": user_id, "name": user_id.upper()})
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    messages = alice.send(alice.presence_message({"cursor": 3}), alice.sync_message())
    assert [m["type"] for m in messages] == ["presence-changed", "sync-resp", "need-since"]
    changed = messages[0]
    assert changed["userInfo"] == {
        "id": "alice",
        "presence": {"cursor": 3},
        "profile": {"id": "alice", "name": "ALICE"},
        "replicaId": alice.replica_id,
        "internal": {},
    }
    assert messages[1]["peerPresence"] == {"alice": changed["userInfo"]}


def test_heartbeat_gets_a_response(replica: Replica) -> None:
    assert replica("alice").heartbeat() == [{"type": "heartbeat-response"}]


def test_evicted_library_is_restored_by_the_next_replica(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    op = initialize(alice, "a", title="keep me")
    first = only(alice.sync(operations=[op]), "sync-resp")
    with app.app_context():
        app.extensions["verdant"].evict_library("lib")
    assert info(app)["operationsCount"] == 0
    assert alice.sync(since=first["ackedTimestamp"], resync_all=False) == [
        {"type": "need-since", "since": None}
    ]
    only(alice.sync(operations=[op], since=None, resync_all=False), "sync-resp")
    newcomer = only(replica("bob").sync(), "sync-resp")
    assert newcomer["operations"] == [op]
    assert newcomer["overwriteLocalData"] is True


def test_operations_of_a_replica_the_server_lost_are_answered_with_need_since(
    replica: Replica, app: Flask
) -> None:
    alice = replica("alice")
    alice.sync(operations=[initialize(alice, "a")])
    with app.app_context():
        app.extensions["verdant"].evict_library("lib")
    late = alice.op(alice.operation("items/a", {"op": "set", "name": "x", "value": 1}))
    assert late == [{"type": "need-since", "since": None}]
    assert info(app)["operationsCount"] == 0, "a fragment would block the library's restoration"


def test_heartbeats_keep_a_replica_from_turning_truant(make_app: Callable[..., Flask]) -> None:
    app = make_app(replica_truancy_minutes=1)
    engine = app.extensions["verdant"].engine
    now = [time.time()]
    engine._clock = lambda: now[0]
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync()
    for _ in range(4):
        now[0] += 40  # each gap is shorter than the truancy, together they are longer
        alice.heartbeat()
    with app.app_context():
        (record,) = app.extensions["verdant"].library_info("lib")["replicas"]
    assert record["truant"] is False
