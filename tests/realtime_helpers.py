"""Serving an app on a real socket and talking to it over websockets, for the realtime tests.

The Flask test client cannot upgrade to a websocket, so these tests run the app in Werkzeug's
threaded server (the one ``flask run`` uses) inside the test process, and use websocket-client.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import websocket
from flask import Flask
from werkzeug.serving import make_server

from flask_verdant.server import SyncServer


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield ``host:port``; the sync server is closed after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        sync_server(app).close()


def sync_server(app: Flask) -> SyncServer:
    server: SyncServer = app.extensions["verdant"]
    return server


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate`` returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


class Socket:
    """One websocket client: JSON messages in, JSON messages out, close codes visible."""

    def __init__(
        self,
        address: str,
        token: str | None,
        *,
        path: str = "/sync",
        header: list[str] | None = None,
        sockopt: tuple[tuple[int, int, int], ...] = (),
    ) -> None:
        self.ws = websocket.create_connection(
            f"ws://{address}{path}",
            subprotocols=["Bearer", token] if token else None,
            header=header,
            sockopt=sockopt,
            timeout=5,
        )

    @property
    def subprotocol(self) -> str | None:
        value: str | None = self.ws.headers.get("sec-websocket-protocol")
        return value

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message; a close frame raises ``Closed``."""
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise Closed(int.from_bytes(data[:2], "big") if len(data) >= 2 else None)
        if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            return self.receive(timeout)
        message: dict[str, Any] = json.loads(data)
        return message

    def receive_until(self, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Messages up to and including the first one of type ``kind``."""
        deadline = time.monotonic() + timeout
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] != kind:
            received.append(self.receive(max(0.01, deadline - time.monotonic())))
        return received

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return its close code."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.receive(max(0.01, deadline - time.monotonic()))
            except Closed as closed:
                return closed.code

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed by the server with {code}")
        self.code = code
