"""A minimal app that syncs Verdant clients through flask-verdant.

Run it with ``bash example_app/run.sh`` (see README). The token route trusts ``?user=``, which is
only acceptable for a demo: a real app takes the user from its own session or login.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request, url_for

from flask_verdant import TokenProvider, Verdant

verdant = Verdant()


def display_profile(user_id: str) -> dict[str, Any]:
    """The trusted data peers see next to a user's presence."""
    return {"id": user_id, "name": user_id.replace("-", " ").title()}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        VERDANT_DATABASE_FILE=os.path.join(app.instance_path, "verdant.sqlite3"),
        VERDANT_TOKEN_SECRET="dev-only-secret-change-me-in-production",
        VERDANT_PROFILES=display_profile,
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    verdant.init_app(app)
    tokens = TokenProvider(secret=app.config["VERDANT_TOKEN_SECRET"])

    @app.get("/auth/<library_id>")
    def auth(library_id: str) -> Any:
        """Issue a sync token; the client reads its sync URL from the token's ``url`` claim."""
        user_id = request.args.get("user")
        if not user_id:
            return jsonify(code=4010, message="Pass ?user=<name> to sign in"), 401
        token = tokens.get_token(
            library_id=library_id,
            user_id=user_id,
            sync_endpoint=url_for("verdant.sync", _external=True),
        )
        return jsonify(accessToken=token)

    @app.get("/")
    def index() -> Any:
        return jsonify(
            name="flask-verdant example",
            sync_endpoint=url_for("verdant.sync", _external=True),
            token_route=url_for("auth", library_id="demo", user="alice", _external=True),
        )

    return app
