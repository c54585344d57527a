"""Graceful shutdown under a real gunicorn: sockets close with 1001 at once, nothing acknowledged
is lost, and the WAL is checkpointed into the database file when the worker exits."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask

from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET
from .realtime_helpers import ServerProcess, Socket, wait_for

pytestmark = pytest.mark.slow


def start(tmp_path: Path, *args: str) -> ServerProcess:
    env = {
        "FLASK_VERDANT_TOKEN_SECRET": SECRET,
        "FLASK_VERDANT_DATABASE_FILE": str(tmp_path / "verdant.sqlite3"),
    }
    return ServerProcess("gunicorn", tmp_path, env, extra_args=args)


def joined(server: ServerProcess, replica: VerdantTestClient) -> Socket:
    s = Socket(server.address, replica.token)
    s.send(replica.sync_message())
    s.receive_until("sync-resp")
    return s


def test_sigterm_closes_sockets_with_1001_at_once_and_checkpoints_the_wal(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    # A long graceful timeout: only our own closing can end the sockets quickly.
    server = start(tmp_path, "--graceful-timeout", "30")
    try:
        alice = VerdantTestClient(make_app(), library_id="lib", user_id="alice")
        s = joined(server, alice)
        op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "kept"})
        s.send(alice.op_message(op))
        s.receive_until("server-ack")
        wal = tmp_path / "verdant.sqlite3-wal"
        assert wal.exists() and wal.stat().st_size > 0
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)  # the master passes it to its worker
        assert s.close_code(timeout=10) == 1001
        assert time.monotonic() - started < 5
        server.process.wait(20)
        assert time.monotonic() - started < 15, "the worker waited for its graceful timeout"
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed"
    with sqlite3.connect(tmp_path / "verdant.sqlite3") as db:
        (data,) = db.execute("SELECT data FROM operations WHERE oid = 'items/1:x'").fetchone()
    assert "kept" in data


def test_a_worker_restarted_by_max_requests_closes_its_sockets_with_1001(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    server = start(tmp_path, "--max-requests", "4", "--graceful-timeout", "2")
    try:
        alice = VerdantTestClient(make_app(), library_id="lib", user_id="alice")
        worker = server.worker_pids()[0]
        s = joined(server, alice)
        for _ in range(4):
            requests.post(
                f"http://{server.address}/sync",
                json={"messages": []},
                headers={"Authorization": f"Bearer {alice.token}"},
                timeout=10,
            )
        assert s.close_code(timeout=15) == 1001
        wait_for(lambda: server.worker_pids() and server.worker_pids()[0] != worker, timeout=15)
        again = joined(server, alice)  # the client reconnects to the new worker
        again.close()
    finally:
        server.stop()
