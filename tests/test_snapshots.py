from __future__ import annotations

from flask import Flask

from flask_verdant import Verdant
from flask_verdant.testing import VerdantTestClient


def ref(oid: str) -> dict[str, str]:
    return {"@@type": "ref", "id": oid}


def test_snapshot_resolves_nested_objects_and_applies_remaining_operations(app: Flask) -> None:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync(
        operations=[
            alice.operation(
                "items/a",
                {
                    "op": "initialize",
                    "value": {"id": "a", "meta": ref("items/a:m"), "tags": ref("items/a:t")},
                },
            ),
            alice.operation("items/a:m", {"op": "initialize", "value": {"note": "n"}}),
            alice.operation("items/a:t", {"op": "initialize", "value": []}),
        ]
    )
    alice.op(
        alice.operation("items/a:t", {"op": "list-push", "value": "red"}),
        alice.operation("items/a:m", {"op": "set", "name": "note", "value": "changed"}),
    )
    with app.app_context():
        snapshot = Verdant().get_document_snapshot("lib", "items", "a")
    assert snapshot == {"id": "a", "meta": {"note": "changed"}, "tags": ["red"]}


def test_snapshot_of_a_missing_or_deleted_document_is_none(app: Flask) -> None:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync(
        operations=[
            alice.operation("items/gone", {"op": "initialize", "value": {"id": "gone"}}),
            alice.operation("items/gone", {"op": "delete"}),
        ]
    )
    with app.app_context():
        assert Verdant().get_document_snapshot("lib", "items", "gone") is None
        assert Verdant().get_document_snapshot("lib", "items", "never") is None


def test_snapshot_survives_a_ref_cycle(app: Flask) -> None:
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync(
        operations=[
            alice.operation("items/c", {"op": "initialize", "value": {"self": ref("items/c:x")}}),
            alice.operation("items/c:x", {"op": "initialize", "value": {"back": ref("items/c")}}),
        ]
    )
    with app.app_context():
        assert Verdant().get_document_snapshot("lib", "items", "c") == {"self": {"back": None}}
