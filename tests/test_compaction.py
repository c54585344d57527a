"""History compaction (docs/protocol.md, "Compaction") with the reference's faults fixed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest
from flask import Flask

from flask_verdant import Verdant
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import catch_up

Replica = Callable[..., VerdantTestClient]


def server_of(app: Flask) -> SyncServer:
    server: SyncServer = app.extensions["verdant"]
    return server


def info(app: Flask) -> dict[str, Any]:
    with app.app_context():
        return server_of(app).library_info("lib")


def init(client: VerdantTestClient, oid: str, value: Any) -> dict[str, Any]:
    return client.operation(oid, {"op": "initialize", "value": value})


def set_field(client: VerdantTestClient, oid: str, name: str, value: Any) -> dict[str, Any]:
    return client.operation(oid, {"op": "set", "name": name, "value": value})


def two_replicas(replica: Replica) -> tuple[VerdantTestClient, VerdantTestClient]:
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[init(alice, "items/a", {"id": "a", "n": 0})])
    bob.sync()
    return alice, bob


def test_operations_every_replica_has_are_folded_into_baselines(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(set_field(alice, "items/a", "n", 1), set_field(alice, "items/a", "n", 2))
    bob.op(set_field(bob, "items/a", "title", "hello"))
    catch_up(alice, bob, alice, bob)
    before = info(app)
    assert before["operationsCount"] == 4
    result = server_of(app).compact("lib")
    assert result.folded_operations == 4
    assert result.documents == ["items/a"]
    after = info(app)
    assert after["operationsCount"] == 0 and after["baselinesCount"] == 1
    newcomer = VerdantTestClient(app, library_id="lib", user_id="carol")
    (response,) = of_type(newcomer.sync(), "sync-resp")
    assert response["operations"] == []
    assert [b["snapshot"] for b in response["baselines"]] == [{"id": "a", "n": 2, "title": "hello"}]


def test_nothing_is_folded_while_a_replica_has_not_received_it(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(set_field(alice, "items/a", "n", 1))
    catch_up(alice)
    assert server_of(app).compact("lib").folded_operations == 0


def test_a_document_stops_at_its_first_operation_that_cannot_be_folded(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    early = set_field(alice, "items/a", "n", "early")
    late = set_field(alice, "items/a", "n", "late")
    catch_up(alice, bob)
    alice.op(late)
    catch_up(alice, bob)
    alice.op(early)  # stored after `late`, so it has the higher server order
    (response,) = of_type(alice.sync(since="known", resync_all=False), "sync-resp")
    alice.ack(nonce=response["ackThisNonce"])
    alice.ack(timestamp=alice.clock.now())
    bob.ack(timestamp=bob.clock.now())  # bob's clock passes both, but bob lacks `early`
    server_of(app).compact("lib")
    remaining = info(app)["operationsCount"]
    assert remaining == 2, "`late` must not be folded while the earlier `early` is unseen"


def test_a_document_without_baseline_starts_deleted(make_app: Callable[..., Flask]) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(set_field(alice, "items/ghost", "title", "boo"))
    catch_up(alice, bob, alice, bob)
    server_of(app).compact("lib")
    newcomer = VerdantTestClient(app, library_id="lib", user_id="carol")
    (response,) = of_type(newcomer.sync(), "sync-resp")
    assert "items/ghost" not in {b["oid"] for b in response["baselines"]}


def test_a_poison_operation_quarantines_only_its_document(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(alice.operation("items/a", {"op": "no-such-patch"}))
    alice.op(init(alice, "items/b", {"id": "b"}), set_field(alice, "items/b", "x", 1))
    catch_up(alice, bob, alice, bob)
    result = server_of(app).compact("lib")
    assert result.quarantined == ["items/a"]
    assert result.documents == ["items/b"]
    quarantined = info(app)["quarantined"]
    assert list(quarantined) == ["items/a"]
    assert server_of(app).compact("lib").folded_operations == 0
    (response,) = of_type(
        VerdantTestClient(app, library_id="lib", user_id="carol").sync(), "sync-resp"
    )
    assert {op["oid"] for op in response["operations"]} == {"items/a"}


def test_passes_are_bounded_batches(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_COMPACTION_BATCH_SIZE": 3}, disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(*[init(alice, f"items/{n}", {"id": str(n)}) for n in range(10)])
    catch_up(alice, bob, alice, bob)
    with app.app_context():
        first = server_of(app).engine.compact_library("lib", 3)
    assert first.folded_operations == 3 and first.has_more
    # 11 operations: the initial one of items/a and ten new documents
    assert server_of(app).compact("lib").folded_operations == 8
    assert info(app)["operationsCount"] == 0


def test_compaction_runs_by_itself_after_writes(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_COMPACTION_DELAY_SECONDS": 0.01})
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    alice.op(set_field(alice, "items/a", "n", 1))
    catch_up(alice, bob, alice, bob)
    deadline = time.monotonic() + 5
    while info(app)["operationsCount"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert info(app)["operationsCount"] == 0
    assert info(app)["baselinesCount"] == 1


def test_disable_rebasing_keeps_history(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_COMPACTION_DELAY_SECONDS": 0.0}, disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    catch_up(alice, bob, alice, bob)
    assert server_of(app).compactions.pending() == []
    assert info(app)["operationsCount"] == 1


def test_cli_compact_reports_what_it_folded(make_app: Callable[..., Flask]) -> None:
    app = make_app(disable_rebasing=True)
    alice, bob = two_replicas(lambda user: VerdantTestClient(app, library_id="lib", user_id=user))
    catch_up(alice, bob, alice, bob)
    result = app.test_cli_runner().invoke(args=["verdant", "compact", "lib"])
    assert result.exit_code == 0, result.output
    assert "Folded 1 operations of 1 documents in library lib" in result.output


def store5(client: VerdantTestClient, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """Send as a store 5.x client does: its presence (always with ``internal``) first."""
    presence = {**client.presence_message({}), "internal": {}}
    return client.send(presence, *messages)


def test_list_set_of_a_store5_client_is_folded_not_quarantined(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(disable_rebasing=True)
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    tags = {"@@type": "ref", "id": "items/a:1"}
    store5(
        alice,
        alice.sync_message(
            operations=[
                init(alice, "items/a:1", ["x", "y"]),
                init(alice, "items/a", {"id": "a", "tags": tags}),
            ]
        ),
    )
    bob.sync()
    alice.op(alice.operation("items/a:1", {"op": "list-set", "index": 1, "value": "z"}))
    with app.app_context():
        assert Verdant().get_document_snapshot("lib", "items", "a") == {
            "id": "a",
            "tags": ["x", "z"],
        }
    catch_up(alice, bob, alice, bob)
    result = server_of(app).compact("lib")
    assert result.quarantined == [] and result.folded_operations == 3
    with app.app_context():
        snapshot = Verdant().get_document_snapshot("lib", "items", "a")
    assert snapshot is not None and snapshot["tags"] == ["x", "z"]


def remove_file_from_list(
    make_app: Callable[..., Flask], send: Callable[..., list[dict[str, Any]]]
) -> Any:
    """``list-remove`` of a file ref, written by a replica whose messages go through ``send``."""
    app = make_app(disable_rebasing=True)
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    photo = {"@@type": "file", "id": "photo-1"}
    send(alice, alice.sync_message(operations=[init(alice, "items/a:1", [photo, 1])]))
    bob.sync()
    alice.op(alice.operation("items/a:1", {"op": "list-remove", "value": photo}))
    catch_up(alice, bob, alice, bob)
    assert server_of(app).compact("lib").folded_operations == 2
    (response,) = of_type(
        VerdantTestClient(app, library_id="lib", user_id="carol").sync(), "sync-resp"
    )
    return response["baselines"][0]["snapshot"]


@pytest.mark.parametrize(
    ("send", "folded"),
    [(VerdantTestClient.send, [{"@@type": "file", "id": "photo-1"}, 1]), (store5, [1])],
    ids=["store3", "store5"],
)
def test_each_operation_is_folded_as_its_author_folds_it(
    make_app: Callable[..., Flask], send: Callable[..., list[dict[str, Any]]], folded: Any
) -> None:
    """Store 3.x clients never remove a file ref with list-remove; store 5.x clients do."""
    assert remove_file_from_list(make_app, send) == folded


def test_a_replica_reset_after_a_document_is_deleted_gets_no_stale_baseline_of_it(
    replica: Replica, app: Flask
) -> None:
    """A newcomer was sent a document's creation and deletion; a later compaction that folds
    only the creation must not send it that half-folded baseline, which store 5.x would take
    as the document brought back (docs/protocol.md, "Baselines after a reset")."""
    alice = replica("alice")
    alice.sync(operations=[init(alice, "items/d", {"id": "d"})])
    catch_up(alice)
    between = alice.clock.now()
    alice.op(alice.operation("items/d", {"op": "delete"}))

    carol = replica("carol")
    (reset,) = of_type(carol.sync(), "sync-resp")
    assert reset["overwriteLocalData"] is True
    assert [op["data"]["op"] for op in reset["operations"]] == ["initialize", "delete"]
    carol.ack(nonce=reset["ackThisNonce"])
    (answer,) = of_type(alice.sync(since="known", resync_all=False), "sync-resp")
    alice.ack(nonce=answer["ackThisNonce"])
    alice.ack(timestamp=between)

    assert server_of(app).compact("lib").folded_operations == 1, "the creation alone"
    assert info(app)["baselinesCount"] == 1
    (after,) = of_type(carol.sync(since=reset["ackedTimestamp"], resync_all=False), "sync-resp")
    assert after["baselines"] == [] and after["operations"] == []


def test_a_baseline_whose_folded_operations_are_unknown_is_still_sent_after_a_reset(
    replica: Replica, app: Flask, database_file: str
) -> None:
    alice = replica("alice")
    alice.sync(operations=[init(alice, "items/d", {"id": "d"})])
    catch_up(alice)
    carol = replica("carol")
    (reset,) = of_type(carol.sync(), "sync-resp")
    carol.ack(nonce=reset["ackThisNonce"])
    catch_up(alice)
    assert server_of(app).compact("lib").folded_operations == 1
    # as a baseline written before schema 10 recorded what it folded
    with closing(sqlite3.connect(database_file)) as connection, connection:
        connection.execute("UPDATE baselines SET foldedServerOrder = NULL")
    (after,) = of_type(carol.sync(since=reset["ackedTimestamp"], resync_all=False), "sync-resp")
    assert [baseline["oid"] for baseline in after["baselines"]] == ["items/d"]


def test_an_operation_older_than_the_global_ack_is_logged(
    replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    """An edit that waited in its client's batch while the client acknowledged newer ones
    arrives below the global ack (docs/protocol.md, "The global ack"): the log says so."""
    alice, bob = replica("alice"), replica("bob")
    alice.sync(operations=[init(alice, "items/a", {"id": "a"})])
    bob.sync()
    batched = bob.operation("items/a", {"op": "set", "name": "late", "value": True})
    catch_up(alice, bob)
    with caplog.at_level("WARNING", logger="flask_verdant"):
        bob.op(bob.operation("items/a", {"op": "set", "name": "on-time", "value": True}))
        assert not caplog.records
        bob.op(batched)
    (record,) = caplog.records
    assert "older than the global ack" in record.getMessage()
    assert bob.replica_id in record.getMessage()
