"""The Flask app that the interop tests run in a real server process.

Started by the ``live_server`` fixture as::

    gunicorn -k gevent -w 1 --bind 127.0.0.1:PORT 'tests.interop.server_app:create_app()'

It uses only flask-verdant's public API. Configuration comes from the environment:

- ``VERDANT_DATABASE_FILE``: the sqlite file (required);
- ``VERDANT_TOKEN_SECRET``: the token secret (default ``interop-secret``);
- ``VERDANT_PRESENCE_KEEPALIVE_SECONDS``: optional, so presence tests can shorten the keepalive;
- ``VERDANT_FILE_ROOT``: optional, a directory for ``LocalFileStorage`` (no file storage without);
  ``VERDANT_MAX_FILE_BYTES``, ``VERDANT_FILE_DELETE_AFTER`` and ``VERDANT_FILE_SWEEP_INTERVAL``
  are passed on to the config, so file tests can shorten the lifecycle.

Routes besides the sync endpoint mounted by the extension at ``/sync``:

- ``GET /auth/<library>?user=<id>``: ``{"accessToken": ...}`` for that user, whose ``url`` claim is
  this server's absolute ``/sync`` URL;
- ``POST /test-admin/evict/<library>`` and ``GET /test-admin/info/<library>``: test-only admin
  routes, because the server process owns the in-memory state and tests must act through it.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

from flask_verdant import LocalFileStorage, TokenProvider, Verdant

DEFAULT_SECRET = "interop-secret"


def load_profile(user_id: str) -> dict[str, Any]:
    """Profile loader: a trusted display name derived from the user id."""
    return {"id": user_id, "name": user_id.title()}


def create_app() -> Flask:
    database_file = os.environ.get("VERDANT_DATABASE_FILE")
    if not database_file:
        raise RuntimeError("VERDANT_DATABASE_FILE must name the sqlite file to use")
    secret = os.environ.get("VERDANT_TOKEN_SECRET", DEFAULT_SECRET)

    app = Flask(__name__)
    if "VERDANT_PRESENCE_KEEPALIVE_SECONDS" in os.environ:
        keepalive = float(os.environ["VERDANT_PRESENCE_KEEPALIVE_SECONDS"])
        app.config["VERDANT_PRESENCE_KEEPALIVE_SECONDS"] = keepalive
    for key in (
        "VERDANT_MAX_FILE_BYTES",
        "VERDANT_FILE_DELETE_AFTER",
        "VERDANT_FILE_SWEEP_INTERVAL",
    ):
        if key in os.environ:
            app.config[key] = os.environ[key]
    file_root = os.environ.get("VERDANT_FILE_ROOT")
    verdant = Verdant(
        app,
        database_file=database_file,
        token_secret=secret,
        profiles=load_profile,
        file_storage=LocalFileStorage(file_root) if file_root else None,
    )
    tokens = TokenProvider(secret=secret)

    @app.get("/auth/<library_id>")
    def auth(library_id: str) -> Any:
        user_id = request.args.get("user")
        if not user_id:
            return jsonify(error="the 'user' query parameter is required"), 400
        token = tokens.get_token(
            library_id=library_id,
            user_id=user_id,
            sync_endpoint=request.host_url + "sync",
        )
        return jsonify(accessToken=token)

    @app.post("/test-admin/evict/<library_id>")
    def evict(library_id: str) -> Any:
        verdant.evict_library(library_id)
        return jsonify(evicted=library_id)

    @app.get("/test-admin/info/<library_id>")
    def info(library_id: str) -> Any:
        return jsonify(verdant.get_library_info(library_id))

    @app.get("/health")
    def health() -> Any:
        return jsonify(ok=True)

    return app
