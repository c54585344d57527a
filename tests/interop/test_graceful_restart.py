"""A gunicorn worker told to stop (SIGTERM) lets the real ``@verdant-web/store`` clients go at once.

The server runs with a 30 s ``--graceful-timeout``: a worker that kept its websockets open would
hold them, and gunicorn would start the new worker, for that long. Closing them with 1001 lets
the worker finish and exit within a second or two; the clients reconnect to the new worker
and an edit made meanwhile reaches the other replica well before the graceful timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import SERVER_ROOT, TARGET, TOKEN_SECRET, _free_port, _gunicorn
from .driver import NodeDriver, wait_until

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(TARGET != "flask", reason="stops a gunicorn worker of flask-verdant"),
]

GRACEFUL_TIMEOUT = 30


class Gunicorn:
    """gunicorn with one gevent worker and a long graceful timeout, serving the interop app."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.log_file = workdir / "gunicorn.log"
        env = {
            **os.environ,
            "VERDANT_DATABASE_FILE": str(workdir / "verdant.sqlite3"),
            "VERDANT_TOKEN_SECRET": TOKEN_SECRET,
            "PYTHONPATH": str(SERVER_ROOT),
        }
        command = [
            _gunicorn(),
            "-k", "gevent", "-w", "1",
            "--bind", f"127.0.0.1:{self.port}",
            "--chdir", str(SERVER_ROOT),
            "--graceful-timeout", str(GRACEFUL_TIMEOUT),
            "--access-logfile", "-", "--error-logfile", "-",
            "tests.interop.server_app:create_app()",
        ]  # fmt: skip
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=SERVER_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(self._healthy, 30, message=lambda: "gunicorn did not start\n" + self.log())

    def _healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok
        except requests.RequestException:
            return False

    def auth_url(self, library: str, user: str) -> str:
        return f"http://127.0.0.1:{self.port}/auth/{library}?user={user}"

    def workers(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_clients_move_to_the_new_worker_at_once(
    gunicorn: Gunicorn, node_driver: NodeDriver
) -> None:
    clients = []
    for name, user in (("a", "alice"), ("b", "bob")):
        client = node_driver.open_client(
            name,
            auth_url=gunicorn.auth_url("restart", user),
            user=user,
            library="restart",
            transport="realtime",
        )
        client.wait_online(sync_responses=1)
        clients.append(client)
    a, b = clients
    a.put({"id": "doc", "title": "before"})
    wait_until(lambda: b.get("doc") is not None, 30, message=lambda: "b never got the doc")

    (old,) = gunicorn.workers()
    stopped = time.monotonic()
    os.kill(old, signal.SIGTERM)
    # The old worker ends once its sockets are closed, far within its graceful timeout, and
    # gunicorn starts the new one; an edit made meanwhile reaches b through it.
    wait_until(
        lambda: gunicorn.workers() not in ([], [old]),
        15,
        message=lambda: "the old worker is still serving\n" + gunicorn.log(),
    )
    a.set("doc", "title", "after")
    wait_until(
        lambda: (b.get("doc") or {}).get("title") == "after",
        15,
        message=lambda: f"b did not get the edit: {b.status()}\n{gunicorn.log()}",
    )
    assert time.monotonic() - stopped < GRACEFUL_TIMEOUT / 2
    assert "Traceback" not in gunicorn.log(), gunicorn.log()
