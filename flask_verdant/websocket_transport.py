"""Realtime sync: a websocket at the same path as HTTP sync, one JSON message per frame.

See docs/protocol.md, "Websocket".

Like the HTTP view, this module only authenticates, decodes and hands messages to the server;
the rules live in the engine. What it adds is what a long-lived socket needs:

- the token is checked before the upgrade, so a bad one gets a plain 401 JSON answer;
- every frame that cannot be a message is answered without disturbing the library's other
  connections: not JSON closes with 1003, a value the server could not keep (``validation``)
  with 1007, a replica of another user with 1008, an oversize message with 1009; a well-formed
  frame of the wrong shape is ignored and logged, because the client would resend it after
  every reconnect;
- sending never blocks the sender's library (``websocket_connection``).

The upgrade itself: the WSGI servers we support hand over the client's socket in the environ
(``gunicorn.socket`` in gunicorn's workers, ``werkzeug.socket`` in ``flask run``), and the
session runs inside the response, in the request's own thread or greenlet. Under gunicorn the
101 answer goes through ``start_response`` (gunicorn keeps ``Connection: upgrade`` for a
websocket and sends nothing after it); the dev server would add ``Connection: close`` to any
answer it writes, so there the 101 is written to the socket directly, and the socket is shut
down before the WSGI call returns: the dev server then finds the connection gone and writes
nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from wsproto.frame_protocol import CloseReason

from . import json_codec, shutdown
from .errors import ErrorCode, VerdantError, bad_request
from .http_transport import error_response, request_token
from .hub import Member
from .messages import HeartbeatMessage, parse_message
from .server import SyncServer
from .throttle import RefusalThrottle
from .tokens import TokenInfo
from .validation import InvalidValue
from .websocket_connection import Refusal, SocketConnection

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("flask_verdant")

SUBPROTOCOL = "Bearer"
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def register(blueprint: Blueprint) -> None:
    """Add the websocket route at the blueprint's sync path, next to the HTTP ``POST``."""
    throttle = RefusalThrottle()

    def sync_socket() -> Response:
        return _upgrade(throttle)

    # ``websocket=True``: werkzeug's routing matches upgrade requests only to such rules.
    blueprint.add_url_rule(
        "", "sync_socket", sync_socket, methods=["GET"], strict_slashes=False, websocket=True
    )


def _upgrade(throttle: RefusalThrottle) -> Response:
    """Authenticate, check the handshake, and answer with the session as the response."""
    server: SyncServer = current_app.extensions["verdant"]
    headers = request.headers
    token = request_token(request)
    try:
        # Refusals are slowed down there, per token and per client address.
        sender = server.authenticate(token, address=request.remote_addr)
        server.admit(sender.library_id)
    except VerdantError as error:
        return error_response(error)
    key = headers.get("Sec-WebSocket-Key", "")
    if headers.get("Sec-WebSocket-Version") != "13" or len(_b64decode(key)) != 16:
        response = error_response(bad_request("Not a version 13 websocket handshake"))
        response.headers["Sec-WebSocket-Version"] = "13"
        return response
    environ = request.environ
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return error_response(
            VerdantError(ErrorCode.UNEXPECTED, "This WSGI server cannot hand over its socket")
        )
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
    accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest()).decode()
    answer = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    answer.append(("Sec-WebSocket-Accept", accept))
    if SUBPROTOCOL in offered:
        # Browsers fail a handshake that selects none of the offered subprotocols.
        answer.append(("Sec-WebSocket-Protocol", SUBPROTOCOL))
    return SessionResponse(server, sender, sock, answer, throttle)


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


class SessionResponse(Response):
    """The 101 answer, then the websocket session, run when the WSGI server calls it."""

    def __init__(
        self,
        server: SyncServer,
        sender: TokenInfo,
        sock: socket.socket,
        handshake: list[tuple[str, str]],
        throttle: RefusalThrottle,
    ) -> None:
        super().__init__(status=101)
        self._server = server
        self._sender = sender
        self._sock = sock
        self._handshake = handshake
        self._throttle = throttle

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status = "101 Switching Protocols"
        if "gunicorn.socket" in environ:
            start_response(status, self._handshake)(b"")
        else:
            lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in self._handshake]
            self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            _session(self._server, self._sender, self._sock, self._throttle)
        finally:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if "gunicorn.socket" not in environ:
            start_response(status, [])
        return []


def _session(
    server: SyncServer, sender: TokenInfo, sock: socket.socket, throttle: RefusalThrottle
) -> None:
    """One client's socket, from handshake to close."""
    settings = server.settings
    connection = SocketConnection(
        sock,
        max_message_bytes=settings.max_message_bytes,
        ping_seconds=settings.websocket_ping_seconds,
        queue_bytes=settings.websocket_queue_bytes,
        queue_size=settings.websocket_queue_size,
        stall_seconds=settings.websocket_ping_seconds or 30.0,
    )
    shutdown.watch(server)
    member = server.connect(sender, connection, lasting=True)
    if shutdown.stopping():
        connection.close(CloseReason.GOING_AWAY, "Server restarting")
    try:
        connection.serve(lambda frame: _handle_frame(server, sender, member, frame, throttle))
    except Exception:
        logger.exception("The websocket of %s failed", _who(sender))
    except BaseException:
        # The worker is ending its requests (gevent's GreenletExit after gunicorn's graceful
        # timeout, as after --max-requests): the client should reconnect at once.
        connection.close(CloseReason.GOING_AWAY, "Server restarting")
        raise
    finally:
        connection.abort()
        server.disconnect(sender, member)


def _handle_frame(
    server: SyncServer,
    sender: TokenInfo,
    member: Member,
    frame: str | bytes,
    throttle: RefusalThrottle,
) -> Refusal:
    """Process one message; return the close code and reason if the socket must be closed."""
    refusal = _refusal(server, sender, member, frame)
    if refusal is not None:
        code, reason = refusal
        server.events.refused(code, "websocket")
        # The client reconnects at once and will likely send the same thing again.
        repeated = throttle.refused(f"{sender.library_id}\0{sender.user_id}\0{code}")
        if repeated:
            time.sleep(throttle.delay)
        logger.log(
            logging.DEBUG if repeated else logging.WARNING,
            "Closing the websocket of %s (%d): %s",
            _who(sender),
            code,
            reason,
        )
    return refusal


def _refusal(server: SyncServer, sender: TokenInfo, member: Member, frame: str | bytes) -> Refusal:
    try:
        raw = json_codec.loads(frame)
    except RecursionError:
        return CloseReason.INVALID_FRAME_PAYLOAD_DATA, "The message is nested too deeply"
    except ValueError:
        return CloseReason.UNSUPPORTED_DATA, "Frames must hold one JSON message"
    try:
        message = parse_message(raw, server.settings.limits)
        if isinstance(message, HeartbeatMessage) and not message.replica_id:
            # Store 5.x heartbeats name no replica, yet they show that the socket's replica is
            # still connected (it must not turn truant).
            message = HeartbeatMessage(replica_id=next(iter(member.replica_ids), None))
        server.process(sender, member, [message])
    except InvalidValue as error:
        return CloseReason.INVALID_FRAME_PAYLOAD_DATA, error.message
    except VerdantError as error:
        if error.code == ErrorCode.FORBIDDEN:
            return CloseReason.POLICY_VIOLATION, error.message
        if error.code == ErrorCode.TOO_LARGE:
            return CloseReason.MESSAGE_TOO_BIG, error.message
        if error.http_status >= 500:  # storage full or busy: the client reconnects and resends
            return CloseReason.TRY_AGAIN_LATER, error.message
        logger.log(
            logging.DEBUG if error.quiet else logging.WARNING,
            "Ignored a websocket frame from %s: %s",
            _who(sender),
            error.message,
        )
    except Exception:
        logger.exception("Websocket message from %s failed", _who(sender))
        return CloseReason.INTERNAL_ERROR, "Internal server error"
    return None


def _who(sender: TokenInfo) -> str:
    return f"user {sender.user_id!r} in library {sender.library_id!r}"
