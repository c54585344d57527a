from __future__ import annotations

from pathlib import Path

import jwt

from example_app import create_app


def test_auth_route_issues_a_token_for_the_sync_endpoint(tmp_path: Path) -> None:
    app = create_app({"VERDANT_DATABASE_FILE": str(tmp_path / "example.sqlite3")})
    client = app.test_client()
    response = client.get("/auth/groceries?user=alice")
    assert response.status_code == 200
    token = response.get_json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["lib"] == "groceries" and claims["sub"] == "alice"
    assert claims["url"] == "http://localhost/sync"
    assert claims["type"] == 0
    sync = client.post(
        "/sync",
        json={"messages": [{"type": "heartbeat", "replicaId": "r"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sync.get_json() == {"messages": [{"type": "heartbeat-response"}]}


def test_auth_route_refuses_anonymous_requests(tmp_path: Path) -> None:
    app = create_app({"VERDANT_DATABASE_FILE": str(tmp_path / "example.sqlite3")})
    assert app.test_client().get("/auth/groceries").status_code == 401
