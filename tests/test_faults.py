"""Fault injection: a full disk, a database locked by another process, a process killed mid-upload.

The disk fills for real, as far as the process can tell: ``RLIMIT_FSIZE`` makes every write
beyond a size fail with ``EFBIG`` (sqlite reports an I/O error, as it does for ``ENOSPC``), and
is lifted again to show that the server recovers. Nothing half-written may remain, and the client
is told to try again later (503, or close 1013 on a websocket) instead of a server error.
"""

from __future__ import annotations

import functools
import io
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask

from flask_verdant import LocalFileStorage
from flask_verdant.storage import Database
from flask_verdant.testing import VerdantTestClient, of_type

from .helpers import SECRET, dump_database
from .realtime_helpers import REPO, Socket, serving, sync_server
from .test_files import FilesClient, file_rows, multipart, stored_files


@contextmanager
def disk_full(directory: Path, headroom: int = 4096) -> Iterator[None]:
    """No file may grow beyond the largest file in ``directory`` plus ``headroom`` bytes."""
    largest = max((p.stat().st_size for p in directory.rglob("*") if p.is_file()), default=0)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def integrity(database_file: str) -> str:
    connection = sqlite3.connect(database_file)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def big_op(client: VerdantTestClient, oid: str = "items/big") -> dict[str, object]:
    return client.op_message(
        client.operation(oid, {"op": "initialize", "value": {"text": "x" * 400_000}})
    )


def test_a_full_disk_during_a_sync_write_is_503_and_writes_nothing(
    make_app: Callable[..., Flask], database_file: str, tmp_path: Path
) -> None:
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    alice.sync(operations=[alice.operation("items/a", {"op": "initialize", "value": {}})])
    bob.sync()
    before = dump_database(database_file)
    message = big_op(alice)
    with disk_full(tmp_path):
        response = alice.post({"messages": [message]})
    assert response.status_code == 503, response.text
    assert response.get_json()["code"] == 5030
    assert dump_database(database_file) == before
    assert integrity(database_file) == "ok"
    # Space again: the same message goes through, and the server's connections all work.
    for _ in range(3):
        assert of_type(bob.sync(since="x", resync_all=False), "sync-resp")
    assert alice.post({"messages": [message]}).status_code == 200
    operations = of_type(bob.sync(since="x", resync_all=False), "sync-resp")[0]["operations"]
    assert "items/big" in [o["oid"] for o in operations]


def test_a_full_disk_under_a_websocket_closes_it_with_1013_and_it_recovers(
    make_app: Callable[..., Flask], database_file: str, tmp_path: Path
) -> None:
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    with serving(app) as address:
        socket = Socket(address, alice.token)
        try:
            socket.send(alice.sync_message())
            socket.receive_until("sync-resp")
            before = dump_database(database_file)
            message = big_op(alice)
            with disk_full(tmp_path):
                socket.send(message)
                code = socket.close_code()
            assert code == 1013
            assert dump_database(database_file) == before
        finally:
            socket.close()
        again = Socket(address, alice.token)
        try:
            again.send(message)
            assert again.receive_until("server-ack")[-1]["timestamp"] == message["timestamp"]
        finally:
            again.close()
    assert integrity(database_file) == "ok"


def test_a_full_disk_during_an_upload_is_503_and_leaves_nothing(
    make_app: Callable[..., Flask], database_file: str, tmp_path: Path
) -> None:
    root = tmp_path / "files"
    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=LocalFileStorage(str(root)))
    client = FilesClient(app)
    assert client.upload("small", b"x" * 1000).status_code == 200
    before = stored_files(root)
    body = multipart("photo.png", os.urandom(2 * 1024 * 1024))
    with disk_full(tmp_path, headroom=64 * 1024):
        # Streamed: the test client would spool a large body to a temporary file first.
        response = client.upload_stream("f1", io.BytesIO(body), len(body))
    assert response.status_code == 503
    assert response.get_json()["code"] == 5030
    assert stored_files(root) == before
    assert list((root / ".uploads").iterdir()) == []
    assert [row[1] for row in file_rows(database_file)] == ["small"]
    assert pending_uploads(database_file) == []
    assert client.upload("f1", b"y" * 5000).status_code == 200


def pending_uploads(database_file: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database_file)
    try:
        return connection.execute("SELECT * FROM file_uploads").fetchall()
    finally:
        connection.close()


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE libraries SET globalAck = globalAck")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


@contextmanager
def locked_by_another_process(database_file: str, seconds: float) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, database_file, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.wait(30)


def test_a_write_waits_for_another_process_holding_the_lock(
    make_app: Callable[..., Flask], database_file: str
) -> None:
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync()
    with locked_by_another_process(database_file, 1.0):
        started = time.monotonic()
        response = alice.post({"messages": [big_op(alice)]})
        waited = time.monotonic() - started
    assert response.status_code == 200 and waited >= 0.5
    assert sync_server(app).library_info("lib")["operationsCount"] == 1


def test_a_lock_held_beyond_the_busy_timeout_is_503_and_changes_nothing(
    make_app: Callable[..., Flask], database_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_verdant.server

    monkeypatch.setattr(
        flask_verdant.server, "Database", functools.partial(Database, busy_timeout_ms=300)
    )
    app = make_app()
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    alice.sync()
    before = dump_database(database_file)
    with locked_by_another_process(database_file, 2.0):
        response = alice.post({"messages": [big_op(alice)]})
        assert response.status_code == 503
        assert response.get_json() == {
            "code": 5030,
            "message": "The database is busy; try again later",
        }
    assert dump_database(database_file) == before
    assert alice.post({"messages": [big_op(alice)]}).status_code == 200
    assert sync_server(app).library_info("lib")["operationsCount"] == 1


KILLED_UPLOAD = """
import os, signal, sys
from flask import Flask
from flask_verdant import LocalFileStorage, Verdant
from flask_verdant.testing import VerdantTestClient

database_file, root, secret = sys.argv[1:4]


class KilledAfterPut(LocalFileStorage):
    def put(self, stream, info):
        size = super().put(stream, info)  # the bytes are in place, renamed and fsynced
        os.kill(os.getpid(), signal.SIGKILL)  # before the metadata write
        return size


app = Flask("killed")
Verdant(app, database_file=database_file, token_secret=secret,
        file_storage=KilledAfterPut(root))
client = VerdantTestClient(app, library_id="lib", user_id="alice")
app.test_client().post(
    "/sync/files/f1",
    headers={"Authorization": f"Bearer {client.token}"},
    data={"file": (__import__("io").BytesIO(b"z" * 10000), "photo.png", "image/png")},
)
print("not killed")
"""


def test_the_sweep_finds_the_bytes_of_an_upload_killed_before_its_metadata(
    database_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "files"
    result = subprocess.run(
        [sys.executable, "-c", KILLED_UPLOAD, database_file, str(root), SECRET],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    orphans = stored_files(root)
    assert len(orphans) == 1 and file_rows(database_file) == []

    app = Flask("after-the-crash")
    from flask_verdant import Verdant

    Verdant(
        app,
        database_file=database_file,
        token_secret=SECRET,
        file_storage=LocalFileStorage(str(root)),
    )
    files = sync_server(app).files
    files.sweep()  # too early: it could still be an upload in progress
    assert stored_files(root) == orphans
    later = files._now_ms() + 2 * 3600 * 1000
    monkeypatch.setattr(files, "_now_ms", lambda: later)
    files.sweep()
    assert stored_files(root) == []
    assert pending_uploads(database_file) == []
    sync_server(app).close()
