"""Sync answers embed JSON that sqlite builds and orjson splices in (see json_codec, records).

These pin what that fast path must keep from the slow one: every operation and baseline with its
exact value, in server order and time order, and the stdlib fallbacks for values orjson refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_verdant import authz, json_codec
from flask_verdant.storage import Database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(str(tmp_path / "store.sqlite3"))
    yield db
    db.close()


def patch(value: Any) -> dict[str, Any]:
    return {"op": "set", "name": "title", "value": value}


ODD_VALUES = ['é "quoted" \\ \u2028', 12345678901234567890, 1.5, -0.0, None, [1, {"a": []}]]


def test_operations_array_holds_every_operation_in_server_order(database: Database) -> None:
    operations = [
        {"oid": f"items/{n % 3}", "timestamp": f"t{9 - n}", "data": patch(value)}
        for n, value in enumerate(ODD_VALUES)
    ]
    with database.write() as tx:
        tx.ensure_library("l")
        tx.insert_operations("l", "r", operations)
        after_two = tx.operations_json_after("l", 2, "u")
        everything = tx.operations_json_after("l", 0, "u")
    assert json.loads(json_codec.dumps({"ops": everything.array})) == {"ops": operations}
    assert everything.last_server_order == len(operations)
    assert json.loads(after_two.array.text) == operations[2:]


def test_an_empty_history_is_an_empty_array_without_a_server_order(database: Database) -> None:
    with database.read() as tx:
        nothing = tx.operations_json_after("l", 0, "u")
        no_baselines = tx.baselines_json_after("l", None, "u")
        reset_operations, reset_baselines = tx.reset_answer_json("l", "u")
    assert (nothing.array.text, nothing.last_server_order) == ("[]", 0)
    assert no_baselines.text == "[]"
    assert (reset_operations.array.text, reset_operations.last_server_order) == ("[]", 0)
    assert reset_baselines.text == "[]"


def test_baselines_array_is_in_time_order_and_keeps_deleted_snapshots(
    database: Database,
) -> None:
    with database.write() as tx:
        tx.replace_baseline("l", "b", {"n": ODD_VALUES}, "t2")
        tx.replace_baseline("l", "a", {"n": 1}, "t2")
        tx.replace_baseline("l", "c", {"n": 0}, "t1")
        tx._db.execute("UPDATE baselines SET snapshot = NULL WHERE oid = 'c'")
        every = json.loads(tx.baselines_json_after("l", None, "u").text)
        newer = json.loads(tx.baselines_json_after("l", "t1", "u").text)
    assert every == [
        {"oid": "c", "snapshot": None, "timestamp": "t1"},
        {"oid": "a", "snapshot": {"n": 1}, "timestamp": "t2"},
        {"oid": "b", "snapshot": {"n": ODD_VALUES}, "timestamp": "t2"},
    ]
    assert newer == every[1:]


def initialize(oid: str, timestamp: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {
        "oid": oid,
        "timestamp": timestamp,
        "data": {"op": "initialize", "value": value},
        **extra,
    }


def test_a_reset_sends_documents_of_initializations_alone_as_baselines(
    database: Database,
) -> None:
    """docs/protocol.md, "Initial documents as baselines"."""
    mine, theirs = authz.key_for("u"), authz.key_for("other")
    ref = {"@@type": "ref", "id": "items/a:1"}
    converted_root = initialize("items/a", "t3", {"list": ref})
    converted_sub = initialize("items/a:1", "t2", [1, 2])
    private = initialize("items/p", "t1", {"n": 1}, authz=mine)
    edited = [
        initialize("items/b", "t4", {"n": 1}),
        {"oid": "items/b", "timestamp": "t5", "data": patch("x")},
    ]
    edited_sub = [
        initialize("items/e", "t6", {}),
        initialize("items/e:1", "t7", {}),
        {"oid": "items/e:1", "timestamp": "t8", "data": patch("y")},
    ]
    reinitialized = [initialize("items/r", "t9", {}), initialize("items/r", "u1", {"n": 2})]
    primitive = initialize("items/s", "u2", "text")
    folded_before = initialize("items/f", "u3", {"n": 3})
    # recognized only as json_codec writes a client's {op, value}
    reordered = {"oid": "items/o", "timestamp": "u5", "data": {"value": {}, "op": "initialize"}}
    unreadable = initialize("items/q", "u4", {"n": 4}, authz=theirs)
    kept = [*edited, *edited_sub, *reinitialized, primitive, folded_before, reordered]
    with database.write() as tx:
        tx.ensure_library("l")
        tx.replace_baseline("l", "items/f:old", {"n": 0}, "t0")
        tx.insert_operations("l", "r", [converted_root, converted_sub, private, *kept, unreadable])
        operations, baselines = tx.reset_answer_json("l", "u")
        plain_operations = tx.operations_json_after("l", 0, "u")

    assert json.loads(operations.array.text) == kept
    assert operations.last_server_order == plain_operations.last_server_order == 14
    assert json.loads(baselines.text) == [
        # the stored baselines in time order, then the converted operations in server order
        {"oid": "items/f:old", "snapshot": {"n": 0}, "timestamp": "t0"},
        {"oid": "items/a", "snapshot": {"list": ref}, "timestamp": "t3"},
        {"oid": "items/a:1", "snapshot": [1, 2], "timestamp": "t2"},
        {"oid": "items/p", "snapshot": {"n": 1}, "timestamp": "t1", "authz": mine},
    ]


def test_a_reset_sends_the_document_of_the_newest_readable_operation_as_operations(
    database: Database,
) -> None:
    """Clients set their clock by the operations they receive: the newest timestamp stays one."""
    older, newest = initialize("items/a", "t1", {}), initialize("items/b", "t2", {})
    unreadable = initialize("items/c", "t3", {}, authz=authz.key_for("other"))
    with database.write() as tx:
        tx.ensure_library("l")
        tx.insert_operations("l", "r", [newest, older, unreadable])
        operations, baselines = tx.reset_answer_json("l", "u")
    assert json.loads(operations.array.text) == [newest]
    assert json.loads(baselines.text) == [{"oid": "items/a", "snapshot": {}, "timestamp": "t1"}]
    assert operations.last_server_order == 3


def test_values_orjson_refuses_go_through_the_stdlib() -> None:
    raw = json_codec.RawJSON('{"x":1}')
    assert json_codec.dumps({1: raw, "big": 2**70}) == '{"1":{"x":1},"big":1180591620717411303424}'
    assert json_codec.loads('"\\ud800"') == "\ud800"
    assert json_codec.dumps([float("nan"), float("inf")]) == "[null,null]"
    with pytest.raises(TypeError):
        json_codec.dumps({"x": object()})
    with pytest.raises(ValueError):
        json_codec.loads("{nope")
