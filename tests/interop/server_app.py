"""The Flask app that the interop tests run in a real server process.

Started by the ``live_server`` fixture as::

    gunicorn -k gevent -w 1 --bind 127.0.0.1:PORT 'tests.interop.server_app:create_app()'

It uses only flask-verdant's public API. Configuration comes from the environment:

- ``VERDANT_DATABASE_FILE``: the sqlite file (required);
- ``VERDANT_TOKEN_SECRET``: the token secret (default ``interop-secret-of-32-bytes-or-more``);
- ``VERDANT_FILE_ROOT``: optional, a directory for ``LocalFileStorage`` (no file storage without);
- every other ``VERDANT_*`` variable becomes app config, so tests can shorten the presence
  keepalive, the truancy, the file lifecycle or the compaction delay.

Warnings and worse are logged to stderr with their level name, so tests can tell a CRITICAL line.

Routes besides the sync endpoint mounted by the extension at ``/sync``:

- ``GET /auth/<library>?user=<id>``: ``{"accessToken": ...}`` for that user, whose ``url`` claim is
  this server's absolute ``/sync`` URL, or with ``VERDANT_HOSTS`` set the library's owner's
  (``Verdant.sync_url_for``);
- ``POST /test-admin/evict/<library>``, ``GET /test-admin/info/<library>``,
  ``POST /test-admin/compact/<library>`` and
  ``GET /test-admin/snapshot/<library>/<collection>/<id>``: test-only admin routes, because the
  server process owns the in-memory state and tests must act through it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, jsonify, request

from flask_verdant import LocalFileStorage, TokenProvider, Verdant

DEFAULT_SECRET = "interop-secret-of-32-bytes-or-more"


# Environment variables the factory reads itself; every other VERDANT_* one is app config.
_NOT_CONFIG = {"VERDANT_DATABASE_FILE", "VERDANT_TOKEN_SECRET", "VERDANT_FILE_ROOT"}


def load_profile(user_id: str) -> dict[str, Any]:
    """Profile loader: a trusted display name derived from the user id."""
    return {"id": user_id, "name": user_id.title()}


def create_app() -> Flask:
    database_file = os.environ.get("VERDANT_DATABASE_FILE")
    if not database_file:
        raise RuntimeError("VERDANT_DATABASE_FILE must name the sqlite file to use")
    secret = os.environ.get("VERDANT_TOKEN_SECRET", DEFAULT_SECRET)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )

    app = Flask(__name__)
    for key, value in os.environ.items():
        if key.startswith("VERDANT_") and key not in _NOT_CONFIG:
            app.config[key] = value
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
            sync_endpoint=verdant.sync_url_for(library_id) or request.host_url + "sync",
        )
        return jsonify(accessToken=token)

    @app.post("/test-admin/evict/<library_id>")
    def evict(library_id: str) -> Any:
        verdant.evict_library(library_id)
        return jsonify(evicted=library_id)

    @app.get("/test-admin/info/<library_id>")
    def info(library_id: str) -> Any:
        return jsonify(verdant.get_library_info(library_id))

    @app.post("/test-admin/compact/<library_id>")
    def compact(library_id: str) -> Any:
        return jsonify(folded=app.extensions["verdant"].compact(library_id).folded_operations)

    @app.get("/test-admin/snapshot/<library_id>/<collection>/<document_id>")
    def snapshot(library_id: str, collection: str, document_id: str) -> Any:
        return jsonify(verdant.get_document_snapshot(library_id, collection, document_id))

    @app.get("/health")
    def health() -> Any:
        return jsonify(ok=True)

    return app
