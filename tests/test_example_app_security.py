"""The example app as a secure starter (issue 12, finding 7): no built-in secrets, CSRF
protection on its forms, SameSite cookies (Secure on https), and lists for members only."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from example_app import create_app

from .test_example_app import csrf_token, sign_in

# What the example app used to run on when no secret was set.
OLD_SESSION_KEY = "dev-only-session-key-change-me-in-production"
OLD_TOKEN_SECRET = "dev-only-secret-change-me-in-production"


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def app(instance: Path) -> Flask:
    return create_app(instance_path=str(instance))


def forged_session_cookie(app: Flask, secret: str, user_id: str) -> str:
    forger = Flask("forger")
    forger.secret_key = secret
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    assert serializer is not None
    return serializer.dumps({"user_id": user_id})


def test_secrets_are_made_per_instance_and_kept(instance: Path, tmp_path: Path) -> None:
    first = create_app(instance_path=str(instance))
    again = create_app(instance_path=str(instance))
    other = create_app(instance_path=str(tmp_path / "other"))
    for key in ("SECRET_KEY", "VERDANT_TOKEN_SECRET"):
        assert first.config[key] == again.config[key]
        assert first.config[key] != other.config[key]
        assert len(first.config[key]) >= 32
    assert first.config["SECRET_KEY"] not in (OLD_SESSION_KEY, first.config["VERDANT_TOKEN_SECRET"])
    mode = stat.S_IMODE((instance / "secrets.json").stat().st_mode)
    assert mode & 0o077 == 0


def test_configured_secrets_win(instance: Path) -> None:
    app = create_app(
        {"SECRET_KEY": "k" * 40, "VERDANT_TOKEN_SECRET": "t" * 40}, instance_path=str(instance)
    )
    assert app.config["SECRET_KEY"] == "k" * 40
    assert app.config["VERDANT_TOKEN_SECRET"] == "t" * 40


def test_the_old_built_in_secrets_forge_nothing(app: Flask) -> None:
    owner = app.test_client()
    ada = sign_in(owner, "Ada")
    assert owner.get("/l/groceries").status_code == 200
    mallory = app.test_client()
    mallory.set_cookie("session", forged_session_cookie(app, OLD_SESSION_KEY, ada))
    assert mallory.get("/auth/groceries").status_code == 401
    token = jwt.encode(
        {"sub": ada, "lib": "groceries", "url": "u", "type": 0, "exp": 2_000_000_000},
        OLD_TOKEN_SECRET,
    )
    response = mallory.post(
        "/sync", json={"messages": []}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/sign-in", "/sign-out"])
def test_forms_refuse_posts_without_the_csrf_token(app: Flask, path: str) -> None:
    client = app.test_client()
    ada = sign_in(client, "Ada")
    for token in (None, "wrong"):
        data = {"name": "Mallory", "list": "x"}
        if token:
            data["csrf_token"] = token
        assert client.post(path, data=data).status_code == 400
    with client.session_transaction() as session:
        assert session["user_id"] == ada
    # A cross-site page cannot read the token, and a fresh browser has none to send.
    assert app.test_client().post("/sign-in", data={"name": "Mallory"}).status_code == 400


def test_the_session_cookie_is_samesite_lax_and_secure_on_https(app: Flask) -> None:
    plain = app.test_client()
    cookie = plain.get("/").headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    secure = app.test_client()
    cookie = secure.get("/", base_url="https://localhost").headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "Secure" in cookie


def test_behind_a_proxy_the_forwarded_scheme_counts(instance: Path) -> None:
    app = create_app({"BEHIND_PROXY": True}, instance_path=str(instance))
    response = app.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]


def test_lists_are_for_members_and_invited_people(app: Flask) -> None:
    ada_browser, grace_browser = app.test_client(), app.test_client()
    sign_in(ada_browser, "Ada")
    page = ada_browser.get("/l/groceries")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="invitation"' in html
    invitation = html.split('id="invitation" readonly value="', 1)[1].split('"', 1)[0]
    invitation = invitation.replace("&amp;", "&")
    code = invitation.split("invite=", 1)[1]

    grace = sign_in(grace_browser, "Grace")
    assert grace_browser.get("/l/groceries").status_code == 403
    denied = grace_browser.get("/auth/groceries")
    assert denied.status_code == 403 and denied.get_json()["code"] == 4030
    # A wrong code changes nothing.
    sign_in(grace_browser, "Grace", invite="not-the-code")
    assert grace_browser.get("/auth/groceries").status_code == 403
    # The invitation link leads to the sign-in form, which joins on submit.
    assert grace_browser.get(invitation.removeprefix("http://localhost")).status_code == 200
    assert sign_in(grace_browser, "Grace", invite=code) == grace
    assert grace_browser.get("/l/groceries").status_code == 200
    assert "accessToken" in grace_browser.get("/auth/groceries").get_json()
    # Only the creator is shown the invitation.
    assert 'id="invitation"' not in grace_browser.get("/l/groceries").get_data(as_text=True)


def test_the_invitation_form_carries_the_code(app: Flask) -> None:
    client = app.test_client()
    csrf_token(client)
    html = client.get("/?list=groceries&invite=abc").get_data(as_text=True)
    assert 'name="invite" value="abc"' in html
