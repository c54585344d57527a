"""The server's compensation for the 3.x pull client dropping early edits.

See docs/protocol.md, "Pull clients and early edits (R1-R7)", and the engine's module
docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import catch_up

Replica = Callable[..., VerdantTestClient]


def only(messages: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = of_type(messages, kind)
    return found


def init(client: VerdantTestClient, oid: str, value: Any) -> dict[str, Any]:
    return client.operation(oid, {"op": "initialize", "value": value})


def test_first_storing_pull_sync_asks_for_the_full_history(replica: Replica) -> None:
    alice = replica("alice")
    messages = alice.sync(operations=[init(alice, "items/a", {"id": "a"})])
    assert [m["type"] for m in messages] == ["sync-resp", "need-since"]
    assert messages[1] == {"type": "need-since", "since": None}


def test_the_full_history_answer_is_merged_not_reset(replica: Replica, app: Flask) -> None:
    alice, bob = replica("alice"), replica("bob")
    sent = init(alice, "items/a", {"id": "a"})
    alice.sync(operations=[sent])
    dropped = init(alice, "items/dropped", {"id": "dropped"})
    folded_away = {
        "oid": "items/folded",
        "snapshot": {"id": "folded"},
        "timestamp": alice.clock.now(),
    }
    answer = alice.sync(
        operations=[sent, dropped], baselines=[folded_away], since=None, resync_all=False
    )
    response = only(answer, "sync-resp")
    assert response["overwriteLocalData"] is False
    assert of_type(answer, "need-since") == []
    (joined,) = of_type(bob.sync(), "sync-resp")
    # A newcomer gets documents of one initialize as baselines, except the newest
    # (docs/protocol.md, "Initial documents as baselines").
    assert sorted(b["oid"] for b in joined["baselines"]) == ["items/a", "items/dropped"]
    (adopted,) = joined["operations"]
    assert adopted["oid"] == "items/folded"
    assert adopted["data"] == {"op": "initialize", "value": {"id": "folded"}}
    assert adopted["timestamp"] == folded_away["timestamp"]


def test_merge_does_not_adopt_a_baseline_of_a_document_others_wrote(replica: Replica) -> None:
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[init(alice, "items/a", {"id": "a"})])
    bob.sync()
    bob.op(bob.operation("items/a", {"op": "set", "name": "by", "value": "bob"}))
    stale = {
        "oid": "items/a",
        "snapshot": {"id": "a", "stale": True},
        "timestamp": alice.clock.now(),
    }
    alice.sync(baselines=[stale], since=None, resync_all=False)
    (newcomer,) = of_type(replica("carol").sync(), "sync-resp")
    assert all(op["data"].get("value") != stale["snapshot"] for op in newcomer["operations"])


def test_later_full_history_from_a_known_replica_is_still_a_reset(replica: Replica) -> None:
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[init(alice, "items/a", {"id": "a"})])
    alice.sync(since=None, resync_all=False)
    bob.sync()
    response = only(bob.sync(since=None, resync_all=False), "sync-resp")
    assert response["overwriteLocalData"] is True


def test_pull_sync_is_acknowledged_one_poll_behind(replica: Replica, app: Flask) -> None:
    alice = replica("alice")
    first = alice.sync_message()
    assert only(alice.send(first), "sync-resp")["ackedTimestamp"] == first["timestamp"]
    second = alice.sync_message(since="x", resync_all=False)
    assert only(alice.send(second), "sync-resp")["ackedTimestamp"] == first["timestamp"]
    third = alice.sync_message(since="x", resync_all=False)
    acked = only(alice.send(third), "sync-resp")["ackedTimestamp"]
    assert acked == second["timestamp"] and acked < third["timestamp"]
    with app.app_context():
        (record,) = app.extensions["verdant"].library_info("lib")["replicas"]
    assert record["ackedLogicalTime"] == second["timestamp"], "the global ack follows R5"


def test_a_baseline_reaches_replicas_that_synced_past_its_timestamp(replica: Replica) -> None:
    reader, writer = replica("reader"), replica("writer")
    folded_long_ago = {
        "oid": "items/old",
        "snapshot": {"id": "old"},
        "timestamp": writer.clock.now(),
    }
    reader.sync()
    reader.sync(since="x", resync_all=False)
    writer.sync(baselines=[folded_long_ago])
    (response,) = of_type(reader.sync(since="x", resync_all=False), "sync-resp")
    assert [op["oid"] for op in response["operations"]] == ["items/old"]


def test_a_resent_folded_operation_is_not_applied_twice(replica: Replica, app: Flask) -> None:
    alice, bob = replica("alice"), replica("bob")
    push = alice.operation("items/a:list", {"op": "list-push", "value": "once"})
    alice.sync(operations=[init(alice, "items/a:list", []), push])
    bob.sync()
    catch_up(alice, bob, alice, bob)
    server = app.extensions["verdant"]
    assert server.compact("lib").folded_operations == 2
    alice.op(push)
    with app.app_context():
        assert server.library_info("lib")["operationsCount"] == 0
