"""CORS for the sync and file routes, for a front end served from another origin.

The client sends ``credentials: 'include'`` and an ``Authorization`` header, and a long-poll adds
``Prefer`` and reads ``Preference-Applied``: so an allowed origin is echoed (never ``*``) with
``Access-Control-Allow-Credentials``, preflights allow those headers, and responses expose
``Preference-Applied``. Origins not listed get no CORS headers, and the browser keeps its
default same-origin rule. Websockets are not subject to CORS; their token authenticates them.
"""

from __future__ import annotations

from collections.abc import Collection

from flask import Blueprint, Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Prefer"
EXPOSED_HEADERS = "Preference-Applied"
PREFLIGHT_MAX_AGE = "86400"
# The routes that serve the sync client; health, readiness and metrics are for operators.
_CLIENT_ENDPOINTS = (
    "sync",
    "sync_socket",
    "file_upload",
    "file_info",
    "file_data",
    "file_bad_path",
)


def register_cors(blueprint: Blueprint, origins: Collection[str]) -> None:
    """Answer preflights and add CORS headers on the blueprint's client routes."""
    if not origins:
        return
    any_origin = "*" in origins

    def allowed_origin() -> str | None:
        endpoint = (request.endpoint or "").rpartition(".")[2]
        origin = request.headers.get("Origin")
        if endpoint not in _CLIENT_ENDPOINTS or not origin:
            return None
        return origin if any_origin or origin in origins else None

    def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = allowed_origin()
        if origin is None:
            return None
        response = Response(status=204)
        _allow(response, origin)
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        response.vary.add("Access-Control-Request-Headers")
        return response

    def add_headers(response: Response) -> Response:
        origin = allowed_origin()
        if origin is not None:
            _allow(response, origin)
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    blueprint.before_request(preflight)
    blueprint.after_request(add_headers)


def _allow(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.vary.add("Origin")
