"""Test helpers for apps that use flask-verdant.

``VerdantTestClient`` speaks the sync protocol through Flask's test client the way one replica
of the real client does, so a host app can check its token route, profiles and sync setup
without a browser (Flask-SocketIO ships a test client for the same reason); its ``connect()``
opens an in-process realtime session that receives broadcasts as a websocket would.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from .messages import parse_message
from .server import SyncServer
from .tokens import ReplicaType, TokenProvider

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int, width: int) -> str:
    digits = ""
    while number:
        number, remainder = divmod(number, 36)
        digits = _BASE36[remainder] + digits
    return digits.rjust(width, "0")


class HybridClock:
    """Makes timestamps in the client's format: version, wall ms, counter, node.

    See docs/protocol.md, "Timestamps".
    """

    def __init__(self, schema_version: int = 1, node: str | None = None) -> None:
        self.schema_version = schema_version
        self.node = node or "".join(secrets.choice(_BASE36) for _ in range(7))
        self._last_ms = 0
        self._counter = 0

    def now(self) -> str:
        wall = int(time.time() * 1000)
        if wall > self._last_ms:
            self._last_ms, self._counter = wall, 0
        else:
            self._counter += 1
        return (
            _base36(self.schema_version, 4)
            + _base36(self._last_ms, 9)
            + _base36(self._counter, 4)
            + self.node
        )


_replica_numbers = itertools.count(1)


class VerdantTestClient:
    """One replica talking to the app's sync endpoint over HTTP."""

    def __init__(
        self,
        app: Flask,
        *,
        library_id: str,
        user_id: str,
        replica_id: str | None = None,
        type: ReplicaType = ReplicaType.REALTIME,
        expires_in: timedelta = timedelta(hours=1),
    ) -> None:
        server: SyncServer = app.extensions["verdant"]
        self.app = app
        self.url = server.settings.url_prefix
        self.library_id = library_id
        self.user_id = user_id
        self.replica_id = replica_id or f"replica-{user_id}-{next(_replica_numbers)}"
        self.clock = HybridClock()
        self.token = TokenProvider(server.settings.token_secret).get_token(
            library_id=library_id,
            user_id=user_id,
            sync_endpoint=f"http://localhost{self.url}",
            type=type,
            expires_in=expires_in,
        )
        self._http = app.test_client()

    def post(
        self,
        body: Any = None,
        *,
        data: bytes | str | None = None,
        token: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        """POST a raw body; ``token=None`` sends none, the default sends this replica's."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token or self.token}")
        if data is None:
            return self._http.post(self.url, json=body, headers=all_headers)
        return self._http.post(
            self.url, data=data, headers=all_headers, content_type="application/json"
        )

    def send(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        """Send messages in one request and return the server's messages; non-200 raises."""
        response = self.post({"messages": list(messages)})
        if response.status_code != 200:
            raise AssertionError(f"sync request failed: {response.status_code} {response.text}")
        result: list[dict[str, Any]] = response.get_json()["messages"]
        return result

    def operation(self, oid: str, patch: dict[str, Any]) -> dict[str, Any]:
        return {"oid": oid, "timestamp": self.clock.now(), "data": patch}

    def sync_message(
        self,
        *,
        operations: Iterable[dict[str, Any]] = (),
        baselines: Iterable[dict[str, Any]] = (),
        since: str | None = None,
        resync_all: bool | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "sync",
            "replicaId": self.replica_id,
            "timestamp": self.clock.now(),
            "schemaVersion": 1,
            "operations": list(operations),
            "baselines": list(baselines),
            "since": since,
            "resyncAll": since is None if resync_all is None else resync_all,
        }

    def sync(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.send(self.sync_message(**kwargs))

    def op_message(self, *operations: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "op",
            "replicaId": self.replica_id,
            "timestamp": self.clock.now(),
            "operations": list(operations),
        }

    def op(self, *operations: dict[str, Any]) -> list[dict[str, Any]]:
        return self.send(self.op_message(*operations))

    def ack(
        self, *, nonce: str | None = None, timestamp: str | None = None
    ) -> list[dict[str, Any]]:
        message: dict[str, Any] = {"type": "ack", "replicaId": self.replica_id}
        if nonce is not None:
            message["nonce"] = nonce
            message["timestamp"] = self.clock.now()
        elif timestamp is not None:
            message["timestamp"] = timestamp
        return self.send(message)

    def heartbeat(self) -> list[dict[str, Any]]:
        return self.send(
            {"type": "heartbeat", "replicaId": self.replica_id, "timestamp": self.clock.now()}
        )

    def presence_message(self, presence: Any) -> dict[str, Any]:
        return {"type": "presence-update", "replicaId": self.replica_id, "presence": presence}

    def update_presence(self, presence: Any) -> list[dict[str, Any]]:
        return self.send(self.presence_message(presence))

    def connect(self) -> RealtimeTestSession:
        """A realtime session of this replica, in process (see ``RealtimeTestSession``)."""
        return RealtimeTestSession(self)


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The messages of one type, in order."""
    return [message for message in messages if message.get("type") == kind]


class RealtimeTestSession:
    """One replica's websocket, in process: what the server sends it, as it would arrive.

    ``VerdantTestClient.connect()`` opens one. It goes through the same path as a websocket
    (token check, the server's admission, a lasting connection in the library's hub, one
    message at a time) without a socket or a server thread, like Flask-SocketIO's
    ``test_client``: broadcasts of other replicas, HTTP ones included, land in ``received``.
    """

    def __init__(self, client: VerdantTestClient) -> None:
        self._client = client
        self._server: SyncServer = client.app.extensions["verdant"]
        self._sender = self._server.authenticate(client.token)
        self._server.admit(self._sender.library_id)
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._closed_by_server = False
        self._member = self._server.connect(self._sender, self, lasting=True)
        self.open = True

    # the hub's Connection

    def send(self, payload: str) -> None:
        with self._lock:
            self._received.append(json.loads(payload))

    def close(self) -> None:
        """The server ends the connection (an eviction); the real client would reconnect."""
        self._closed_by_server = True
        self.open = False

    # the test's side

    def emit(self, *messages: dict[str, Any]) -> None:
        """Send messages as frames, one after the other (refusals raise ``VerdantError``)."""
        if not self.open:
            raise RuntimeError("the session is closed")
        for message in messages:
            self._server.process(self._sender, self._member, [parse_message(message)])

    def get_received(self) -> list[dict[str, Any]]:
        """Everything the server sent since the last call, in order."""
        with self._lock:
            received, self._received = self._received, []
        return received

    @property
    def closed_by_server(self) -> bool:
        return self._closed_by_server

    def disconnect(self) -> None:
        """The client closes its socket: its replicas leave presence."""
        if self.open:
            self.open = False
            self._server.disconnect(self._sender, self._member)

    def __enter__(self) -> RealtimeTestSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()
