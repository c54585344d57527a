"""CORS on the sync and file routes (``VERDANT_CORS_ORIGINS``), preflights included."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from flask_verdant import LocalFileStorage
from flask_verdant.testing import VerdantTestClient

ORIGIN = "https://app.example"


def preflight(app: Flask, path: str, origin: str = ORIGIN, method: str = "POST") -> TestResponse:
    return app.test_client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, prefer",
        },
    )


@pytest.fixture
def cors_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return make_app(
        {"VERDANT_CORS_ORIGINS": [ORIGIN, "http://localhost:5173"]},
        file_storage=LocalFileStorage(tmp_path / "files"),
    )


def test_without_the_setting_no_cors_headers_are_sent(app: Flask) -> None:
    ada = VerdantTestClient(app, library_id="lib", user_id="ada")
    answer = ada.post({"messages": [ada.sync_message()]}, headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "Access-Control-Allow-Origin" not in preflight(app, "/sync").headers


def test_a_preflight_of_the_sync_route_allows_prefer_and_authorization(cors_app: Flask) -> None:
    answer = preflight(cors_app, "/sync")
    assert answer.status_code == 204
    headers = answer.headers
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "prefer"} <= allowed
    assert "Origin" in headers["Vary"]


def test_sync_answers_carry_cors_headers_and_expose_preference_applied(cors_app: Flask) -> None:
    ada = VerdantTestClient(cors_app, library_id="lib", user_id="ada")
    answer = ada.post(
        {"messages": [ada.sync_message()]}, headers={"Origin": ORIGIN, "Prefer": "wait=1"}
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Expose-Headers"] == "Preference-Applied"
    assert answer.headers["Preference-Applied"] == "wait=1"


def test_refusals_carry_cors_headers_so_the_page_can_read_them(cors_app: Flask) -> None:
    answer = cors_app.test_client().post(
        "/sync", json={"messages": []}, headers={"Origin": ORIGIN, "Authorization": "Bearer x"}
    )
    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_other_origins_get_no_cors_headers(cors_app: Flask) -> None:
    evil = "https://evil.example"
    answer = preflight(cors_app, "/sync", origin=evil)
    assert "Access-Control-Allow-Origin" not in answer.headers
    ada = VerdantTestClient(cors_app, library_id="lib", user_id="ada")
    posted = ada.post({"messages": [ada.sync_message()]}, headers={"Origin": evil})
    assert "Access-Control-Allow-Origin" not in posted.headers


def test_file_routes_have_cors_too(cors_app: Flask) -> None:
    assert preflight(cors_app, "/sync/files/f1").status_code == 204
    ada = VerdantTestClient(cors_app, library_id="lib", user_id="ada")
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {ada.token}"}
    client = cors_app.test_client()
    upload = client.post(
        "/sync/files/f1",
        headers=headers,
        data={"file": (io.BytesIO(b"bytes"), "a.txt", "text/plain")},
    )
    assert upload.status_code == 200
    assert upload.headers["Access-Control-Allow-Origin"] == ORIGIN
    info = client.get("/sync/files/f1", headers=headers)
    assert info.headers["Access-Control-Allow-Origin"] == ORIGIN
    data = client.get(info.get_json()["url"].replace("http://localhost", ""), headers=headers)
    assert data.status_code == 200
    assert data.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_operator_routes_have_no_cors(cors_app: Flask) -> None:
    for path in ("/sync/health", "/sync/ready", "/sync/metrics"):
        answer = cors_app.test_client().get(path, headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in answer.headers, path


@pytest.mark.parametrize(
    ("setting", "origin", "allowed"),
    [
        ("*", "https://anything.example", True),
        ("https://a.example, https://b.example", "https://b.example", True),
        ("https://a.example https://b.example/", "https://b.example", True),
        ("https://a.example", "https://b.example", False),
    ],
)
def test_the_setting_from_the_environment(
    make_app: Callable[..., Flask], setting: str, origin: str, allowed: bool
) -> None:
    app = make_app({"VERDANT_CORS_ORIGINS": setting})
    answer = preflight(app, "/sync", origin=origin)
    assert (answer.headers.get("Access-Control-Allow-Origin") == origin) is allowed
