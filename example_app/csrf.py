"""Cross-site request forgery protection for the app's own forms.

Every form carries a random token kept in the session, and every POST to the app's pages must
send it back: another site can make a browser post to us, but cannot read the token. (The
session cookie is also ``SameSite=Lax``, which stops most such posts on its own.) The sync
endpoint is not concerned: it authenticates with a bearer token, not a cookie.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

FIELD = "csrf_token"


def token() -> str:
    value = session.get(FIELD)
    if not isinstance(value, str):
        value = session[FIELD] = secrets.token_urlsafe(32)
    return value


def init_app(app: Flask, blueprints: tuple[str, ...]) -> None:
    app.jinja_env.globals["csrf_token"] = token

    @app.before_request
    def check() -> None:
        if request.method != "POST" or request.blueprint not in blueprints:
            return
        sent = request.form.get(FIELD, "")
        expected = session.get(FIELD)
        if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
            abort(400, "The form expired or came from another site; reload the page.")
