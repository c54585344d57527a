"""Every refused request answers a clear status and JSON body, and changes nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask import Flask

from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import dump_database


@pytest.fixture
def seeded(make_app: Callable[..., Flask], database_file: str) -> tuple[Flask, VerdantTestClient]:
    """A library with data and one known replica (alice), so 'unchanged' means something."""
    app = make_app({"VERDANT_MAX_MESSAGE_BYTES": 4096})
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.send(
        alice.presence_message({"here": True}),
        alice.sync_message(
            operations=[alice.operation("items/a", {"op": "initialize", "value": {"id": "a"}})]
        ),
    )
    return app, alice


def good_op(client: VerdantTestClient) -> dict[str, Any]:
    return client.op_message(client.operation("items/b", {"op": "initialize", "value": {}}))


def bodies(client: VerdantTestClient) -> dict[str, Any]:
    op = good_op(client)
    return {
        "messages-missing": {"nope": []},
        "messages-not-a-list": {"messages": {"type": "op"}},
        "body-not-an-object": [op],
        "message-not-an-object": {"messages": ["op"]},
        "unknown-type": {"messages": [op, {"type": "launch-missiles", "replicaId": "r"}]},
        "type-missing": {"messages": [{"replicaId": "r"}]},
        "replica-id-number": {"messages": [{**op, "replicaId": 7}]},
        "operations-not-a-list": {"messages": [{**op, "operations": "x"}]},
        "operation-without-oid": {
            "messages": [{**op, "operations": [{"timestamp": "t", "data": {"op": "set"}}]}]
        },
        "operation-data-not-a-patch": {
            "messages": [{**op, "operations": [{"oid": "o", "timestamp": "t", "data": 3}]}]
        },
        "sync-since-number": {"messages": [{**client.sync_message(), "since": 5}]},
        "sync-baselines-missing": {
            "messages": [{k: v for k, v in client.sync_message().items() if k != "baselines"}]
        },
        "ack-nonce-garbage": {
            "messages": [op, {"type": "ack", "replicaId": client.replica_id, "nonce": "%%%"}]
        },
        "ack-nonce-not-a-number": {
            "messages": [{"type": "ack", "replicaId": client.replica_id, "nonce": "InRydWUi"}]
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        "messages-missing",
        "messages-not-a-list",
        "body-not-an-object",
        "message-not-an-object",
        "unknown-type",
        "type-missing",
        "replica-id-number",
        "operations-not-a-list",
        "operation-without-oid",
        "operation-data-not-a-patch",
        "sync-since-number",
        "sync-baselines-missing",
        "ack-nonce-garbage",
        "ack-nonce-not-a-number",
    ],
)
def test_malformed_messages_are_400_and_change_nothing(
    seeded: tuple[Flask, VerdantTestClient], database_file: str, case: str
) -> None:
    app, alice = seeded
    before = dump_database(database_file)
    response = alice.post(bodies(alice)[case])
    assert response.status_code == 400
    assert response.get_json()["code"] == 4000
    assert response.get_json()["message"]
    assert dump_database(database_file) == before
    assert of_type(alice.sync(since="x", resync_all=False), "sync-resp")


def test_non_json_body_is_400(seeded: tuple[Flask, VerdantTestClient], database_file: str) -> None:
    _, alice = seeded
    before = dump_database(database_file)
    response = alice.post(data=b'{"messages": [')
    assert response.status_code == 400
    assert response.get_json() == {"code": 4000, "message": "The request body is not valid JSON"}
    assert dump_database(database_file) == before


def test_empty_body_is_400(seeded: tuple[Flask, VerdantTestClient], database_file: str) -> None:
    _, alice = seeded
    response = alice.post(data=b"")
    assert response.status_code == 400
    assert response.get_json()["code"] == 4001


def test_oversized_body_is_413(seeded: tuple[Flask, VerdantTestClient], database_file: str) -> None:
    _, alice = seeded
    before = dump_database(database_file)
    big = alice.operation("items/big", {"op": "initialize", "value": {"text": "x" * 5000}})
    response = alice.post({"messages": [alice.op_message(big)]})
    assert response.status_code == 413
    assert response.get_json()["code"] == 4130
    assert dump_database(database_file) == before


def other_secret_token() -> str:
    return jwt.encode(
        {"sub": "alice", "lib": "lib", "url": "u", "type": 0},
        "a-different-secret-entirely-for-forging",
    )


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, 4010),
        ("garbage", 4011),
        ("forged", 4011),
        ("expired", 4012),
    ],
)
def test_token_problems_are_401(
    seeded: tuple[Flask, VerdantTestClient], database_file: str, token: str | None, code: int
) -> None:
    app, alice = seeded
    if token == "forged":
        token = other_secret_token()
    elif token == "expired":
        token = VerdantTestClient(
            app, library_id="lib", user_id="alice", expires_in=timedelta(seconds=-5)
        ).token
    before = dump_database(database_file)
    response = alice.post({"messages": [good_op(alice)]}, token=token)
    assert response.status_code == 401
    assert response.get_json()["code"] == code
    assert dump_database(database_file) == before


def test_token_in_query_string_is_accepted(seeded: tuple[Flask, VerdantTestClient]) -> None:
    app, alice = seeded
    response = app.test_client().post(
        f"/sync?token={alice.token}", json={"messages": [alice.sync_message(since="x")]}
    )
    assert response.status_code == 200


def test_replica_of_another_user_is_403_for_the_whole_batch(
    seeded: tuple[Flask, VerdantTestClient], database_file: str
) -> None:
    app, alice = seeded
    mallory = VerdantTestClient(app, library_id="lib", user_id="mallory")
    before = dump_database(database_file)
    innocent = good_op(mallory)
    hijack = {**good_op(mallory), "replicaId": alice.replica_id}
    response = mallory.post({"messages": [innocent, hijack]})
    assert response.status_code == 403
    assert response.get_json()["code"] == 4030
    assert dump_database(database_file) == before


def test_other_libraries_keep_working_after_bad_requests(
    seeded: tuple[Flask, VerdantTestClient],
) -> None:
    app, alice = seeded
    for _ in range(3):
        alice.post(data=b"nonsense")
    other = VerdantTestClient(app, library_id="other", user_id="bob")
    response = of_type(other.sync(), "sync-resp")
    assert response[0]["overwriteLocalData"] is False


def test_unexpected_failure_is_500_and_rolls_back(
    seeded: tuple[Flask, VerdantTestClient], database_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, alice = seeded
    from flask_verdant.storage.database import Transaction

    def explode(self: Transaction, *args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Transaction, "touch_replica", explode)
    before = dump_database(database_file)
    response = alice.post({"messages": [good_op(alice)]})
    assert response.status_code == 500
    assert response.get_json() == {"code": 5000, "message": "Internal server error"}
    assert dump_database(database_file) == before


def test_get_on_the_sync_path_is_405(seeded: tuple[Flask, VerdantTestClient]) -> None:
    app, _ = seeded
    assert app.test_client().get("/sync").status_code in (400, 405)
