"""Realtime sync: a websocket at the same path as HTTP sync, one JSON message per frame (spec 3.3).

Like the HTTP view, this module only authenticates, decodes and hands messages to the server;
the rules live in the engine. What it adds is what a long-lived socket needs:

- the token is checked before the upgrade completes, so a bad one gets a plain 401;
- every frame that cannot be a message is answered without disturbing the library's other
  connections: not JSON closes with 1003, a replica of another user with 1008, an oversize frame
  with 1009 (simple_websocket does that one); a well-formed frame of the wrong shape is ignored and
  logged, because the client would resend it after every reconnect;
- sending never blocks the sender's library: ``SocketConnection.send`` only queues, a writer
  thread (a greenlet under gevent) writes, and a socket whose bounded queue overflows is cut off.
  Its client reconnects at once and catches up through ``sync``.
"""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, MutableMapping
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from . import json_codec
from .errors import ErrorCode, VerdantError
from .http_transport import error_response, request_token
from .messages import HeartbeatMessage, parse_message
from .server import SyncServer
from .settings import Settings
from .threadreuse import ThreadReuse
from .tokens import TokenInfo

logger = logging.getLogger("flask_verdant")

SUBPROTOCOL = "Bearer"
_VIEW = "sync_socket"
_WRITERS = ThreadReuse()


def register(blueprint: Blueprint) -> None:
    """Add the websocket route at the blueprint's sync path, next to the HTTP ``POST``."""
    throttle = RefusalThrottle()

    def authenticate_upgrade() -> Response | None:
        return _authenticate_upgrade(throttle)

    def sync_socket(ws: Any) -> None:
        _sync_socket(ws, throttle)

    blueprint.before_request(authenticate_upgrade)
    Sock().route("", bp=blueprint, strict_slashes=False)(sync_socket)


def configure(config: MutableMapping[str, Any], settings: Settings) -> None:
    """Merge our needs into flask-sock's app-wide ``SOCK_SERVER_OPTIONS``.

    The client offers ``['Bearer', <token>]`` and browsers fail a handshake whose answer selects
    no subprotocol (spec 11.1), so ``Bearer`` must be accepted. Options the host already set for
    its own sockets are kept.
    """
    options = dict(config.get("SOCK_SERVER_OPTIONS") or {})
    offered = options.get("subprotocols") or []
    subprotocols = [offered] if isinstance(offered, str) else list(offered)
    if SUBPROTOCOL not in subprotocols:
        subprotocols.append(SUBPROTOCOL)
    options["subprotocols"] = subprotocols
    options.setdefault("ping_interval", settings.websocket_ping_seconds or None)
    options.setdefault("max_message_size", settings.max_message_bytes)
    options.setdefault("thread_class", LightThread)
    config["SOCK_SERVER_OPTIONS"] = options


def _authenticate_upgrade(throttle: RefusalThrottle) -> Response | None:
    """Refuse a bad token with a 401 before flask-sock completes the handshake."""
    if request.endpoint != f"{request.blueprint}.{_VIEW}":
        return None
    server: SyncServer = current_app.extensions["verdant"]
    token = request_token(request)
    try:
        g.verdant_sender = server.authenticate(token)
    except VerdantError as error:
        repeated = throttle.refused(token or "")
        if repeated:
            time.sleep(throttle.delay)
        return error_response(error, quiet=repeated)
    # No permessage-deflate, as in the reference server: it would cost a compressor per socket
    # for every connection. simple_websocket accepts whatever the handshake offers.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return None


def _sync_socket(ws: Any, throttle: RefusalThrottle) -> None:
    """One client's socket, from handshake to close."""
    server: SyncServer = current_app.extensions["verdant"]
    sender: TokenInfo = g.verdant_sender
    settings = server.settings
    connection = SocketConnection(
        ws, settings.websocket_queue_size, settings.websocket_ping_seconds or 30.0
    )
    server.hub.register(sender.library_id, connection, sender.user_id)
    try:
        _serve(server, sender, connection, throttle)
    finally:
        server.hub.unregister(sender.library_id, connection)
        connection.close()
        server.disconnect(sender, connection)


def _serve(
    server: SyncServer, sender: TokenInfo, connection: SocketConnection, throttle: RefusalThrottle
) -> None:
    ws = connection.ws
    speaker = _Speaker()
    while True:
        try:
            frame = ws.receive()
        except ConnectionClosed:
            if getattr(ws, "incoming_message_len", 0) > server.settings.max_message_bytes:
                logger.warning("Closed the websocket of %s: frame too large", _who(sender))
            return
        refusal = _handle_frame(server, sender, connection, frame, speaker)
        if refusal is not None:
            code, reason = refusal
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
            with contextlib.suppress(ConnectionClosed, OSError):
                ws.close(reason=code, message=reason)
            return


class _Speaker:
    """The replica a socket last spoke for: store 5.x heartbeats name none, yet they show that
    this replica is still connected (it must not turn truant)."""

    replica_id: str | None = None


def _handle_frame(
    server: SyncServer,
    sender: TokenInfo,
    connection: SocketConnection,
    frame: str | bytes,
    speaker: _Speaker,
) -> tuple[int, str] | None:
    """Process one frame; return the close code and reason if the socket must be closed."""
    try:
        raw = json_codec.loads(frame)
    except (ValueError, RecursionError):
        return CloseReason.UNSUPPORTED_DATA, "Frames must hold one JSON message"
    try:
        message = parse_message(raw)
        if message.replica_id:
            speaker.replica_id = message.replica_id
        elif isinstance(message, HeartbeatMessage):
            message = HeartbeatMessage(replica_id=speaker.replica_id)
        server.process(sender, connection, [message], owner=connection)
    except VerdantError as error:
        if error.code == ErrorCode.FORBIDDEN:
            return CloseReason.POLICY_VIOLATION, "Replica belongs to another user"
        logger.warning("Ignored a websocket frame from %s: %s", _who(sender), error.message)
    except Exception:
        logger.exception("Websocket message from %s failed", _who(sender))
        return CloseReason.INTERNAL_ERROR, "Internal server error"
    return None


def _who(sender: TokenInfo) -> str:
    return f"user {sender.user_id!r} in library {sender.library_id!r}"


class RefusalThrottle:
    """Slows down clients that retry a refused token, or a refused frame, in a loop.

    Store 3.x clients reconnect with no delay and never refresh a token (spec 2.6, 3.7), so one
    expired token would cost hundreds of refused upgrades a second, for as long as the tab stays
    open; a client whose replica belongs to another user (say, a second user signed in on the
    same browser) would be closed just as often. The first refusal is answered at once; a repeat
    of the same key within ``window`` seconds waits ``delay`` seconds first (a parked greenlet
    under gevent), about one attempt a second.
    """

    def __init__(self, delay: float = 1.0, window: float = 10.0, size: int = 4096) -> None:
        self.delay = delay
        self._window = window
        self._size = size
        self._lock = threading.Lock()
        self._last: OrderedDict[str, float] = OrderedDict()

    def refused(self, key: str) -> bool:
        """Record a refusal; say whether the same key (a token, a user) was refused recently."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            previous = self._last.pop(digest, None)
            self._last[digest] = now
            while len(self._last) > self._size:
                self._last.popitem(last=False)
        return previous is not None and now - previous < self._window


class LightThread:
    """simple_websocket's ``thread_class`` for its reader: a bare thread, no ``threading.Thread``.

    Each websocket keeps its reader for life, and ``threading.Thread``'s bookkeeping (events,
    locks, registry entries) cost an idle connection some 2 KiB (BENCHMARKS.md). Under gevent
    ``_thread`` starts a greenlet.
    """

    def __init__(self, target: Callable[[], None]) -> None:
        self._target = target
        self.name = "simple_websocket reader"

    def start(self) -> None:
        _thread.start_new_thread(self._target, ())


class SocketConnection:
    """The hub's view of one websocket: ``send`` only queues; a writer thread does the writing.

    A socket has a writer only while it has something to write: a send that finds none hands
    the writing to a reused thread (``threadreuse``), which lets go when nothing is left. So an
    idle socket holds no thread (under gevent a greenlet and its stack) and nothing to wake one
    with, only its list of pending messages (BENCHMARKS.md: memory per idle connection).
    """

    def __init__(self, ws: Any, queue_size: int, stall_timeout: float) -> None:
        self.ws = ws
        self._socket = _SerializedSocket(ws.sock, stall_timeout)
        ws.sock = self._socket
        self._pending: deque[str] = deque()
        self._limit = max(1, queue_size)
        self._lock = threading.Lock()
        self._writing = False
        self._closing = False

    def send(self, payload: str) -> None:
        with self._lock:
            if self._closing:
                return
            full = len(self._pending) >= self._limit
            if not full:
                self._pending.append(payload)
            start = not full and not self._writing
            self._writing = self._writing or start
        if full:
            logger.warning("Cut off a websocket that fell %d messages behind", self._limit)
            self.abort()
        elif start:
            _WRITERS.run(self._write)

    def close(self) -> None:
        """Stop writing and end the socket; what is still queued is dropped."""
        self.abort()

    def abort(self) -> None:
        """Cut the socket off; its handler sees the close and cleans up."""
        self._closing = True
        # Also wakes simple_websocket's reader thread now rather than at its next ping.
        self._socket.shutdown()

    def _write(self) -> None:
        while not self._closing:
            with self._lock:
                if not self._pending:
                    self._writing = False
                    return
                payload = self._pending.popleft()
            try:
                self.ws.send(payload)
            except (ConnectionClosed, LocalProtocolError, OSError):
                self.abort()
                return


class _SerializedSocket:
    """Stands in for the socket simple_websocket writes to, making every write whole and single.

    simple_websocket writes with ``socket.send``, which under gevent (a non-blocking socket
    underneath) may write part of a frame and drop the rest; and its reader thread writes pings,
    pongs and close replies without a lock, which could land inside one of our frames. A write
    that waits longer than ``stall_timeout`` for its turn fails: the peer has stopped reading, and
    the failure ends the connection instead of leaving its reader stuck.
    """

    def __init__(self, sock: socket.socket, stall_timeout: float) -> None:
        self._sock = sock
        self._stall_timeout = stall_timeout
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        if not self._lock.acquire(timeout=self._stall_timeout):
            raise TimeoutError("the peer stopped reading")
        try:
            self._sock.sendall(data)
        finally:
            self._lock.release()
        return len(data)

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()
