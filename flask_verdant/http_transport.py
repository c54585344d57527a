"""HTTP push/pull: ``POST <url_prefix>`` with ``{"messages": [...]}``.

The view only authenticates, decodes and validates, then hands the batch to the server; the
response holds the direct replies plus every library broadcast emitted while the request was
registered (spec 3.2), in emission order.
"""

from __future__ import annotations

import logging

from flask import Request, Response, current_app, request

from . import json_codec
from .errors import ErrorCode, VerdantError, bad_request
from .messages import ClientMessage, parse_messages
from .server import SyncServer

logger = logging.getLogger("flask_verdant")


class RequestConnection:
    """Collects the JSON texts addressed to one HTTP request."""

    def __init__(self) -> None:
        self.payloads: list[str] = []

    def send(self, payload: str) -> None:
        self.payloads.append(payload)

    def body(self) -> str:
        return '{"messages":[' + ",".join(self.payloads) + "]}"


def request_token(req: Request) -> str | None:
    """Authorization: Bearer, then the websocket subprotocol hack, then ``?token=`` (spec 2.3)."""
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer" and value.strip():
        return value.strip()
    first, _, second = req.headers.get("Sec-WebSocket-Protocol", "").partition(",")
    if first == "Bearer" and second.strip():
        return second.strip()
    return req.args.get("token") or None


def sync_view() -> Response:
    server: SyncServer = current_app.extensions["verdant"]
    try:
        sender = server.authenticate(request_token(request))
        messages = _read_messages(server.settings.max_message_bytes)
        connection = RequestConnection()
        server.hub.register(sender.library_id, connection)
        try:
            server.process(sender, connection, messages)
        finally:
            server.hub.unregister(sender.library_id, connection)
    except VerdantError as error:
        return error_response(error)
    except Exception:
        logger.exception("Sync request failed")
        return error_response(VerdantError(ErrorCode.UNEXPECTED, "Internal server error"))
    return Response(connection.body(), status=200, mimetype="application/json")


def _read_messages(limit: int) -> list[ClientMessage]:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    if not data:
        raise VerdantError(ErrorCode.BODY_REQUIRED, "The request needs a JSON body")
    try:
        body = json_codec.loads(data)
    except ValueError as exc:
        raise bad_request("The request body is not valid JSON") from exc
    if not isinstance(body, dict) or "messages" not in body:
        raise bad_request('The body must be an object with a "messages" list')
    return parse_messages(body["messages"])


def _too_large(limit: int) -> VerdantError:
    return VerdantError(ErrorCode.TOO_LARGE, f"The body is larger than {limit} bytes")


def error_response(error: VerdantError) -> Response:
    if error.http_status >= 500:
        logger.error("Sync error %s: %s", int(error.code), error.message)
    else:
        logger.warning("Refused sync request (%s): %s", int(error.code), error.message)
    return Response(
        json_codec.dumps(error.to_json()), status=error.http_status, mimetype="application/json"
    )
