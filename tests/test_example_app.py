from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app, verdant
from flask_verdant.testing import VerdantTestClient


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(instance_path=str(tmp_path / "instance"))


def csrf_token(client: FlaskClient) -> str:
    """What the app's forms carry: the token it keeps in the session."""
    client.get("/")
    with client.session_transaction() as session:
        token: str = session["csrf_token"]
    return token


def sign_in(client: FlaskClient, name: str, library: str = "groceries", invite: str = "") -> str:
    response = client.post(
        "/sign-in",
        data={"name": name, "list": library, "invite": invite, "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 302 and response.location == f"/l/{library}"
    with client.session_transaction() as session:
        user_id: str = session["user_id"]
    return user_id


def test_the_token_route_refuses_requests_without_a_session(app: Flask) -> None:
    response = app.test_client().get("/auth/groceries")
    assert response.status_code == 401
    assert response.get_json()["code"] == 4010


def test_the_list_page_sends_anonymous_visitors_to_sign_in(app: Flask) -> None:
    response = app.test_client().get("/l/groceries")
    assert response.status_code == 302 and response.location == "/?list=groceries"


def test_a_signed_in_user_gets_a_token_for_themselves_that_syncs(app: Flask) -> None:
    client = app.test_client()
    user_id = sign_in(client, "  Ada   Lovelace ")
    assert user_id.startswith("Ada Lovelace#")
    assert client.get("/l/groceries").status_code == 200  # the first to open it creates it
    token = client.get("/auth/groceries").get_json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["lib"] == "groceries" and claims["sub"] == user_id
    assert claims["url"] == "http://localhost/sync"
    sync = client.post(
        "/sync",
        json={"messages": [{"type": "heartbeat", "replicaId": "r"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sync.get_json() == {"messages": [{"type": "heartbeat-response"}]}


def test_the_page_hands_its_client_the_token_route_and_the_user(app: Flask) -> None:
    client = app.test_client()
    user_id = sign_in(client, "Ada")
    page = client.get("/l/groceries").get_data(as_text=True)
    assert '"authEndpoint": "http://localhost/auth/groceries"' in page
    assert f'"id": "{user_id}"' in page and '"name": "Ada"' in page


def test_people_with_the_same_name_are_different_users(app: Flask) -> None:
    first, second = app.test_client(), app.test_client()
    ada = sign_in(first, "Ada")
    assert sign_in(first, "Ada", "chores") == ada  # the same person opening another list
    assert sign_in(second, "Ada") != ada
    assert sign_in(first, "Grace") != ada


def test_peers_see_the_display_name_in_presence(app: Flask) -> None:
    user_id = sign_in(app.test_client(), "Ada")
    VerdantTestClient(app, library_id="groceries", user_id=user_id).update_presence({})
    with app.app_context():
        presence = verdant.get_library_presence("groceries")
    assert presence[user_id]["profile"] == {"id": user_id, "name": "Ada"}


def test_signing_out_ends_the_session(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "Ada")
    assert client.post("/sign-out", data={"csrf_token": csrf_token(client)}).status_code == 302
    assert client.get("/auth/groceries").status_code == 401
