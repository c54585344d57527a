"""Serving an app on a real socket and talking to it over websockets, for the realtime tests.

The Flask test client cannot upgrade to a websocket, so these tests run the app in Werkzeug's
threaded server (the one ``flask run`` uses) inside the test process, or the example app in a
real gunicorn or ``flask run`` process, and use websocket-client.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import websocket
from flask import Flask
from werkzeug.serving import make_server

from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield ``host:port``; the sync server is closed after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval so that shutdown() returns quickly.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
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


class ServerProcess:
    """The example app served by a real server process: gunicorn's gevent worker or ``flask run``.

    ``env`` is extra environment; the example app reads ``FLASK_VERDANT_*`` from it.
    """

    def __init__(
        self,
        kind: str,
        workdir: Path,
        env: dict[str, str],
        *,
        preload: bool = False,
        extra_args: tuple[str, ...] = (),
    ):
        self.log_file = workdir / f"{kind}.log"
        self.port = free_port()
        app = "example_app:create_app()"
        if kind == "gunicorn":
            command = [
                str(Path(sys.executable).with_name("gunicorn")),
                *("-k", "gevent", "-w", "1", "--bind", f"127.0.0.1:{self.port}"),
                *("--graceful-timeout", "2", "--access-logfile", "-", "--error-logfile", "-"),
                *(["--preload"] if preload else []),
                *extra_args,
                app,
            ]
        else:
            flask = str(Path(sys.executable).with_name("flask"))
            command = [flask, "--app", app, "run", "--port", str(self.port), "--no-reload"]
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.address = f"127.0.0.1:{self.port}"
        try:
            wait_for(self._ready, timeout=30, interval=0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"{kind} did not start:\n{self.log()}") from None

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Live = tuple[Flask, str]


class Harness:
    """Serves apps and opens sockets; at teardown closes the sockets first, then the servers."""

    def __init__(self, make_app: Callable[..., Flask], stack: ExitStack) -> None:
        self._make_app = make_app
        self._stack = stack
        self.sockets: list[Socket] = []

    def serve(self, config: dict[str, Any] | None = None) -> Live:
        app = self._make_app(config)
        return app, self._stack.enter_context(serving(app))

    def connect(self, live: Live, replica: VerdantTestClient, **kw: Any) -> Socket:
        s = Socket(live[1], replica.token, **kw)
        self.sockets.append(s)
        return s

    def close_sockets(self) -> None:
        for s in self.sockets:
            s.close()
