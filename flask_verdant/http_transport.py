"""HTTP push/pull: ``POST <url_prefix>`` with ``{"messages": [...]}``.

The view only authenticates, decodes and validates, then hands the batch to the server; the
response holds the direct replies plus every library broadcast emitted while the request was
registered, in emission order (docs/protocol.md, "HTTP push/pull").

Long-poll, for clients that cannot hold a websocket: a request with ``Prefer: wait=<seconds>``
(RFC 7240) is held after processing until a broadcast reaches it (another replica's ``op-re``, a
presence change, a global ack) or the wait ends, and says ``Preference-Applied: wait=<n>``.
``{"messages": []}`` is a pure listen. Requests without the header are never held: real pull
clients give up on answers slower than 3 s (docs/protocol.md, "Long-poll"). A held request is
a parked greenlet under gevent, but a whole thread under the threaded dev server or a sync
worker.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Request, Response, current_app, request

from . import json_codec
from .errors import ErrorCode, VerdantError, bad_request
from .messages import ClientMessage, parse_messages
from .server import SyncServer
from .validation import Limits

logger = logging.getLogger("flask_verdant")

_DELTA_SECONDS = re.compile(r"[0-9]{1,9}")
# How often a held long-poll checks that its client is still there.
_DISCONNECT_PROBE_SECONDS = 1.0


class RequestConnection:
    """Collects the JSON texts addressed to one HTTP request.

    Its own replies are delivered by the request's own thread (or greenlet), under the library
    lock; anything sent from another thread is a broadcast caused by someone else, which is what
    a long-poll waits for.
    """

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._lock = threading.Lock()
        self._finished = False
        self._thread = threading.get_ident()
        self._arrived = threading.Event()

    def send(self, payload: str) -> None:
        with self._lock:
            if self._finished:
                return
            self.payloads.append(payload)
        if threading.get_ident() != self._thread:
            self._arrived.set()

    def listen(self, seconds: float, client_gone: Callable[[], bool]) -> None:
        """Hold until someone else's broadcast arrives, the time is up, or the client left."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._arrived.wait(min(remaining, _DISCONNECT_PROBE_SECONDS)) or client_gone():
                return

    def close(self) -> None:
        """Stop holding: the request answers now with what it has."""
        self._arrived.set()

    def body(self) -> str:
        """The response body; later sends are dropped (the client catches up through ``sync``)."""
        with self._lock:
            self._finished = True
            return '{"messages":[' + ",".join(self.payloads) + "]}"


def request_token(req: Request) -> str | None:
    """Authorization: Bearer, then the websocket subprotocol, then ``?token=``.

    See docs/protocol.md, "Tokens".
    """
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
        sender = server.authenticate(
            request_token(request), address=request.remote_addr, remember=True
        )
        wait = preferred_wait(
            request.headers.getlist("Prefer"), server.settings.long_poll_max_seconds
        )
        server.admit(sender.library_id)
        messages = _read_messages(server.settings.max_message_bytes, server.settings.limits)
        connection = RequestConnection()
        member = server.connect(sender, connection, lasting=False)
        try:
            server.process(sender, member, messages)
            if wait:
                server.events.connected(sender, "long-poll")
                try:
                    connection.listen(wait, _disconnect_probe(request.environ))
                finally:
                    server.events.disconnected(sender, "long-poll")
        finally:
            server.disconnect(sender, member)
    except VerdantError as error:
        return error_response(error)
    except Exception:
        logger.exception("Sync request failed")
        return error_response(VerdantError(ErrorCode.UNEXPECTED, "Internal server error"))
    response = Response(connection.body(), status=200, mimetype="application/json")
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response


def preferred_wait(prefer_headers: list[str], limit: float) -> int:
    """The ``wait`` preference in whole seconds, capped at ``limit``; 0 when absent or off."""
    for header in prefer_headers:
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            value = value.strip().strip('"')
            if name.strip().lower() == "wait" and _DELTA_SECONDS.fullmatch(value):
                return int(min(int(value), limit))
    return 0


def _disconnect_probe(environ: Mapping[str, Any]) -> Callable[[], bool]:
    """A check that the client of a held request closed its connection, where the server says."""
    sock: Any = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return lambda: False

    def client_gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and not sock.recv(1, socket.MSG_PEEK)
        except ValueError:
            # select() cannot watch a descriptor above 1023 (a worker with that many clients):
            # the request is then held until its wait ends or a broadcast arrives.
            return False
        except OSError:
            return True

    return client_gone


def _read_messages(limit: int, limits: Limits) -> list[ClientMessage]:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    if not data:
        raise VerdantError(ErrorCode.BODY_REQUIRED, "The request needs a JSON body")
    try:
        body = json_codec.loads(data)
    except RecursionError as exc:
        raise bad_request("The request body is nested too deeply") from exc
    except ValueError as exc:
        raise bad_request("The request body is not valid JSON") from exc
    if not isinstance(body, dict) or "messages" not in body:
        raise bad_request('The body must be an object with a "messages" list')
    return parse_messages(body["messages"], limits)


def _too_large(limit: int) -> VerdantError:
    return VerdantError(ErrorCode.TOO_LARGE, f"The body is larger than {limit} bytes")


def error_response(error: VerdantError, *, quiet: bool = False) -> Response:
    """The JSON error answer; ``quiet`` (or a quiet error) logs a refusal at debug level."""
    current_app.extensions["verdant"].events.refused(int(error.code), "http")
    quiet = quiet or error.quiet
    if error.http_status >= 500:
        logger.error("Sync error %s: %s", int(error.code), error.message)
    else:
        logger.log(
            logging.DEBUG if quiet else logging.WARNING,
            "Refused sync request (%s): %s",
            int(error.code),
            error.message,
        )
    return Response(
        json_codec.dumps(error.to_json()), status=error.http_status, mimetype="application/json"
    )
