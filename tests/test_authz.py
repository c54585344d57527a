"""Store 5.x private documents: ``authz`` stored, relayed and enforced per user."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_verdant import LocalFileStorage, authz
from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import catch_up
from .realtime_helpers import Socket, serving, sync_server


def key(user: str) -> str:
    return base64.b64encode(f"u:{user}:*".encode()).decode()


def private(client: VerdantTestClient, oid: str, value: Any, owner: str) -> dict[str, Any]:
    return {**client.operation(oid, {"op": "initialize", "value": value}), "authz": key(owner)}


def public(client: VerdantTestClient, oid: str, value: Any) -> dict[str, Any]:
    return client.operation(oid, {"op": "initialize", "value": value})


def records(messages: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    """The operations and baselines of the one ``sync-resp`` (a newcomer gets documents of one
    ``initialize`` as baselines: docs/protocol.md, "Initial documents as baselines")."""
    (response,) = of_type(messages, "sync-resp")
    return [record for field in fields or ("operations", "baselines") for record in response[field]]


def oids(messages: list[dict[str, Any]], *fields: str) -> set[str]:
    return {record["oid"] for record in records(messages, *fields)}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(disable_rebasing=True)


def replica(app: Flask, user: str) -> VerdantTestClient:
    return VerdantTestClient(app, library_id="lib", user_id=user)


def test_a_private_document_reaches_only_its_owner(app: Flask) -> None:
    alice = replica(app, "alice")
    alice.sync(
        operations=[
            private(alice, "items/secret", {"id": "secret"}, "alice"),
            public(alice, "items/open", {"id": "open"}),
        ]
    )
    bob_sync = replica(app, "bob").sync()
    assert oids(bob_sync) == {"items/open"}
    laptop = replica(app, "alice").sync()
    assert oids(laptop) == {"items/secret", "items/open"}
    (secret,) = [record for record in records(laptop) if "authz" in record]
    assert secret["authz"] == key("alice")
    # bob's acknowledgement still passes alice's private operation, so history can be folded
    (response,) = of_type(bob_sync, "sync-resp")
    (mine,) = of_type(laptop, "sync-resp")
    assert response["ackThisNonce"] == mine["ackThisNonce"]


def test_the_originator_placeholder_becomes_the_sender(app: Flask) -> None:
    alice = replica(app, "alice")
    alice.sync(operations=[private(alice, "items/a", {"id": "a"}, authz.ORIGINATOR)])
    assert oids(replica(app, "bob").sync()) == set()
    (response,) = of_type(replica(app, "alice").sync(), "sync-resp")
    assert response["operations"][0]["authz"] == key("alice")


def test_compaction_keeps_a_private_baseline_private(app: Flask) -> None:
    alice, bob = replica(app, "alice"), replica(app, "bob")
    alice.sync(
        operations=[
            private(alice, "items/secret", {"id": "secret"}, "alice"),
            {
                **alice.operation("items/secret", {"op": "set", "name": "n", "value": 1}),
                "authz": key("alice"),
            },
            public(alice, "items/open", {"id": "open"}),
        ]
    )
    bob.sync()
    catch_up(alice, bob, alice, bob)
    assert sync_server(app).compact("lib").folded_operations == 3
    assert oids(replica(app, "carol").sync(), "baselines") == {"items/open"}
    mine = of_type(replica(app, "alice").sync(), "sync-resp")[0]["baselines"]
    secret = next(b for b in mine if b["oid"] == "items/secret")
    assert secret == {
        "oid": "items/secret",
        "snapshot": {"id": "secret", "n": 1},
        "timestamp": secret["timestamp"],
        "authz": key("alice"),
    }


def test_a_private_baseline_a_client_sends_stays_private(app: Flask) -> None:
    alice = replica(app, "alice")
    baseline = {
        "oid": "items/local",
        "snapshot": {"id": "local"},
        "timestamp": alice.clock.now(),
        "authz": key(authz.ORIGINATOR),
    }
    alice.sync(baselines=[baseline])
    assert oids(replica(app, "bob").sync()) == set()
    (response,) = of_type(replica(app, "alice").sync(), "sync-resp")
    assert [op.get("authz") for op in response["operations"]] == [key("alice")]


@pytest.mark.parametrize(
    "bad",
    [5, "not base64!", base64.b64encode(b"u:alice").decode(), key("")]
    + [base64.b64encode(b"g:team:*").decode()],
)
def test_an_authz_key_the_server_cannot_enforce_is_refused(app: Flask, bad: Any) -> None:
    alice = replica(app, "alice")
    operation = {**public(alice, "items/a", {"id": "a"}), "authz": bad}
    response = alice.post({"messages": [alice.sync_message(operations=[operation])]})
    assert response.status_code == 400
    assert response.get_json()["code"] == 4000
    assert oids(replica(app, "bob").sync()) == set()


def test_op_re_of_a_private_document_goes_only_to_its_owners_sockets(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    with serving(app) as url:
        alice, laptop, bob = replica(app, "alice"), replica(app, "alice"), replica(app, "bob")
        sockets = {
            name: Socket(url, client.token)
            for name, client in [("alice", alice), ("laptop", laptop), ("bob", bob)]
        }
        try:
            for name, client in [("alice", alice), ("laptop", laptop), ("bob", bob)]:
                sockets[name].send(client.sync_message())
                sockets[name].receive_until("sync-resp")
            sockets["alice"].send(
                alice.op_message(
                    private(alice, "items/secret", {"id": "secret"}, "alice"),
                    public(alice, "items/open", {"id": "open"}),
                )
            )
            sockets["alice"].receive_until("server-ack")
            laptop_relays = of_type(sockets["laptop"].receive_until("op-re"), "op-re")
            while sum(len(m["operations"]) for m in laptop_relays) < 2:
                laptop_relays += of_type(sockets["laptop"].receive_until("op-re"), "op-re")
            bob_relays = of_type(sockets["bob"].receive_until("op-re"), "op-re")
            # a heartbeat answered after it shows nothing else was queued for bob
            sockets["bob"].send({"type": "heartbeat", "replicaId": bob.replica_id})
            bob_relays += of_type(sockets["bob"].receive_until("heartbeat-response"), "op-re")
        finally:
            for s in sockets.values():
                s.close()
    assert [op["oid"] for m in bob_relays for op in m["operations"]] == ["items/open"]
    assert sorted(op["oid"] for m in laptop_relays for op in m["operations"]) == [
        "items/open",
        "items/secret",
    ]


def upload(app: Flask, client: VerdantTestClient, file_id: str) -> int:
    response = app.test_client().post(
        f"/sync/files/{file_id}",
        headers={"Authorization": f"Bearer {client.token}"},
        data={"file": (io.BytesIO(b"photo"), "photo.png", "image/png")},
    )
    return response.status_code


def file_info(app: Flask, client: VerdantTestClient, file_id: str) -> int:
    response = app.test_client().get(
        f"/sync/files/{file_id}", headers={"Authorization": f"Bearer {client.token}"}
    )
    return response.status_code


@pytest.fixture
def files_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return make_app(
        {"VERDANT_FILE_SWEEP_INTERVAL": 0},
        file_storage=LocalFileStorage(tmp_path / "files"),
        disable_rebasing=True,
    )


def test_a_private_documents_file_is_its_users_alone(files_app: Flask) -> None:
    alice, bob = replica(files_app, "alice"), replica(files_app, "bob")
    photo = {"@@type": "file", "id": "photo-1"}
    alice.sync(
        operations=[private(alice, "items/secret", {"id": "secret", "photo": photo}, "alice")]
    )
    assert upload(files_app, alice, "photo-1") == 200
    assert file_info(files_app, alice, "photo-1") == 200
    assert file_info(files_app, bob, "photo-1") == 404


def test_a_later_private_reference_cannot_take_a_public_file_over(files_app: Flask) -> None:
    alice, bob = replica(files_app, "alice"), replica(files_app, "bob")
    photo = {"@@type": "file", "id": "photo-1"}
    alice.sync(operations=[public(alice, "items/open", {"id": "open", "photo": photo})])
    assert upload(files_app, alice, "photo-1") == 200
    bob.sync(operations=[private(bob, "items/mine:1", [photo], "bob")])
    assert file_info(files_app, alice, "photo-1") == 200
    assert file_info(files_app, replica(files_app, "carol"), "photo-1") == 200
