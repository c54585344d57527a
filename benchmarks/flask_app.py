"""The app the benchmarks serve with gunicorn: flask-verdant at ``/sync`` plus an ``/auth`` route.

Its routes match ``reference_server/host.mjs``, so the load generator drives both servers the same
way. Configuration: ``VERDANT_DATABASE_FILE`` (required), ``VERDANT_TOKEN_SECRET``,
``VERDANT_DURABILITY``, ``VERDANT_MESSAGE_QUEUE`` (several workers share a Redis) and
``VERDANT_PRESENCE_UPDATES_PER_SECOND``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

from flask_verdant import TokenProvider, Verdant


def create_app() -> Flask:
    database_file = os.environ["VERDANT_DATABASE_FILE"]
    secret = os.environ.get("VERDANT_TOKEN_SECRET", "interop-secret-of-32-bytes-or-more")
    app = Flask(__name__)
    # "fsync" (the default): acknowledged means on disk, as in the official server.
    app.config["VERDANT_DURABILITY"] = os.environ.get("VERDANT_DURABILITY", "fsync")
    for name in ("VERDANT_MESSAGE_QUEUE", "VERDANT_PRESENCE_UPDATES_PER_SECOND"):
        if os.environ.get(name):
            app.config[name] = os.environ[name]
    Verdant(
        app,
        database_file=database_file,
        token_secret=secret,
        profiles=lambda user_id: {"id": user_id, "name": user_id.title()},
    )
    tokens = TokenProvider(secret=secret)

    @app.get("/auth/<library_id>")
    def auth(library_id: str) -> Any:
        user_id = request.args.get("user")
        if not user_id:
            return jsonify(error="the 'user' query parameter is required"), 400
        token = tokens.get_token(
            library_id=library_id, user_id=user_id, sync_endpoint=request.host_url + "sync"
        )
        return jsonify(accessToken=token)

    @app.get("/health")
    def health() -> Any:
        # The worker's pid: the runner waits until every worker has answered.
        return jsonify(ok=True, pid=os.getpid())

    return app
