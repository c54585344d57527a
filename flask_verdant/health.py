"""Liveness and readiness routes under the sync blueprint, for load balancers and orchestrators.

- ``GET <url_prefix>/health``: the process serves requests (liveness). It touches nothing else,
  so a slow database never gets a healthy worker restarted.
- ``GET <url_prefix>/ready``: the worker can sync now (readiness): 200 when every check of
  ``SyncServer.ready()`` passes, 503 with the failing ones otherwise.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .server import SyncServer


def register_health_routes(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/health", "health", health_view, methods=["GET"])
    blueprint.add_url_rule("/ready", "ready", ready_view, methods=["GET"])


def health_view() -> Response:
    return jsonify(status="ok")


def ready_view() -> tuple[Response, int]:
    server: SyncServer = current_app.extensions["verdant"]
    checks = server.ready()
    ready = all(checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), (
        200 if ready else 503
    )
