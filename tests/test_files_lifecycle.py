"""Pending deletion, the sweep (on demand, periodic and from the CLI) and eviction."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_verdant import FileInfo, LocalFileStorage, Verdant
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient, of_type

from .test_files import FilesClient, file_rows, stored_files

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def files_app(make_app: Callable[..., Flask], root: Path) -> Flask:
    return make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=LocalFileStorage(root))


@pytest.fixture
def server(files_app: Flask) -> SyncServer:
    server: SyncServer = files_app.extensions["verdant"]
    return server


@pytest.fixture
def client(files_app: Flask) -> FilesClient:
    return FilesClient(files_app)


def now_ms() -> int:
    return int(time.time() * 1000)


def unreference(server: SyncServer, *file_ids: str, at_ms: int, library_id: str = "lib") -> None:
    """What compaction does when it folds a patch that drops these file refs."""
    with server.database.write() as tx:
        tx.mark_files_unreferenced(library_id, file_ids, at_ms)


def test_unreferenced_files_are_deleted_only_after_the_grace_period(
    server: SyncServer, client: FilesClient, root: Path, database_file: str
) -> None:
    client.upload("old", b"old bytes")
    client.upload("recent", b"recent bytes")
    client.upload("kept", b"kept bytes")
    old_url = client.info("old").get_json()["url"]
    unreference(server, "old", at_ms=now_ms() - DAY_MS - 1000)
    unreference(server, "recent", at_ms=now_ms() - DAY_MS + 60_000)

    assert server.files.sweep() == 1
    assert client.info("old").status_code == 404
    assert client.download(old_url).status_code == 404
    assert client.info("recent").status_code == 200  # still in its grace period, still served
    assert client.info("kept").status_code == 200
    assert len(stored_files(root)) == 2
    assert len(file_rows(database_file)) == 2


def test_a_reference_coming_back_cancels_the_deletion(
    server: SyncServer, client: FilesClient
) -> None:
    client.upload("f1", b"x")
    unreference(server, "f1", at_ms=now_ms() - 2 * DAY_MS)
    with server.database.write() as tx:
        tx.mark_files_referenced("lib", ["f1"])
    assert server.files.sweep() == 0
    assert client.info("f1").status_code == 200


def test_a_reupload_cancels_the_deletion(server: SyncServer, client: FilesClient) -> None:
    client.upload("f1", b"x")
    unreference(server, "f1", at_ms=now_ms() - 2 * DAY_MS)
    client.upload("f1", b"x again")
    assert server.files.sweep() == 0
    info = client.info("f1").get_json()
    assert client.download(info["url"]).get_data() == b"x again"


def test_marking_keeps_the_first_start_and_ignores_unknown_files(
    server: SyncServer, client: FilesClient
) -> None:
    client.upload("f1", b"x")
    unreference(server, "f1", "never-uploaded", at_ms=now_ms() - 2 * DAY_MS)
    unreference(server, "f1", at_ms=now_ms())  # dropped again: the clock does not restart
    assert server.files.sweep() == 1


def test_marking_is_per_library(files_app: Flask, server: SyncServer) -> None:
    alpha = FilesClient(files_app, library_id="alpha")
    beta = FilesClient(files_app, library_id="beta")
    alpha.upload("same", b"a")
    beta.upload("same", b"b")
    unreference(server, "same", at_ms=now_ms() - 2 * DAY_MS, library_id="alpha")
    assert server.files.sweep() == 1
    assert alpha.info("same").status_code == 404
    assert beta.info("same").status_code == 200


def test_a_failed_delete_stays_pending_and_is_retried(
    make_app: Callable[..., Flask], root: Path, database_file: str
) -> None:
    class Flaky(LocalFileStorage):
        failures = 1

        def delete(self, info: FileInfo) -> None:
            if self.failures:
                self.failures -= 1
                raise PermissionError(13, "Permission denied")
            super().delete(info)

    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=Flaky(root))
    server: SyncServer = app.extensions["verdant"]
    FilesClient(app).upload("f1", b"x")
    unreference(server, "f1", at_ms=now_ms() - 2 * DAY_MS)
    assert server.files.sweep() == 0
    (row,) = file_rows(database_file)
    assert row[-1] is not None  # still pending
    assert server.files.sweep() == 1
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_the_grace_period_is_configurable(make_app: Callable[..., Flask], root: Path) -> None:
    app = make_app(
        {"VERDANT_FILE_DELETE_AFTER": 0, "VERDANT_FILE_SWEEP_INTERVAL": 0},
        file_storage=LocalFileStorage(root),
    )
    server: SyncServer = app.extensions["verdant"]
    FilesClient(app).upload("f1", b"x")
    unreference(server, "f1", at_ms=now_ms() - 1)
    assert server.files.sweep() == 1


def test_the_sweep_removes_uploads_left_behind_by_a_killed_process(
    make_app: Callable[..., Flask], root: Path
) -> None:
    storage = LocalFileStorage(root, stale_upload_seconds=60)
    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=storage)
    uploads = root / ".uploads"
    uploads.mkdir(parents=True)
    (uploads / "upload-dead").write_bytes(b"partial")
    (uploads / "upload-active").write_bytes(b"in progress")
    old = time.time() - 3600
    os.utime(uploads / "upload-dead", (old, old))
    app.extensions["verdant"].files.sweep()
    assert sorted(p.name for p in uploads.iterdir()) == ["upload-active"]


def test_evict_library_deletes_its_files_and_only_its_files(
    files_app: Flask, root: Path, database_file: str
) -> None:
    alpha = FilesClient(files_app, library_id="alpha")
    beta = FilesClient(files_app, library_id="beta")
    alpha.upload("a1", b"1")
    alpha.upload("a2", b"2")
    beta.upload("b1", b"3")
    with files_app.app_context():
        Verdant().evict_library("alpha")
    assert alpha.info("a1").status_code == 404
    assert alpha.info("a2").status_code == 404
    assert beta.info("b1").status_code == 200
    assert [path.split("/")[0] for path in stored_files(root)] == ["beta"]
    assert not (root / "alpha").exists()


def test_cli_sweep(files_app: Flask, server: SyncServer, client: FilesClient) -> None:
    client.upload("f1", b"x")
    client.upload("f2", b"y")
    unreference(server, "f1", "f2", at_ms=now_ms() - 2 * DAY_MS)
    result = files_app.test_cli_runner().invoke(args=["verdant", "files", "sweep"])
    assert result.exit_code == 0, result.output
    assert "Deleted 2 files" in result.output
    assert client.info("f1").status_code == 404


def _sweep_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "verdant-file-sweep"]


def test_the_periodic_sweep_starts_lazily_and_deletes_without_being_asked(
    make_app: Callable[..., Flask], root: Path
) -> None:
    before = len(_sweep_threads())
    app = make_app(
        {"VERDANT_FILE_SWEEP_INTERVAL": 0.05, "VERDANT_FILE_DELETE_AFTER": 0},
        file_storage=LocalFileStorage(root),
    )
    server: SyncServer = app.extensions["verdant"]
    # creating the app starts nothing: a process that forks afterwards (gunicorn) must not
    # have lost a thread in its workers
    assert len(_sweep_threads()) == before
    client = FilesClient(app)
    client.upload("f1", b"x")
    assert len(_sweep_threads()) == before + 1
    client.upload("f2", b"y")  # later requests do not start more
    assert len(_sweep_threads()) == before + 1

    unreference(server, "f1", at_ms=now_ms() - 1)
    deadline = time.monotonic() + 10
    while client.info("f1").status_code != 404:
        assert time.monotonic() < deadline, "the periodic sweep did not delete the file"
        time.sleep(0.05)
    assert client.info("f2").status_code == 200

    server.close()
    deadline = time.monotonic() + 5
    while len(_sweep_threads()) > before:
        assert time.monotonic() < deadline, "the sweep thread did not stop"
        time.sleep(0.05)


def test_no_sweep_thread_without_storage(app: Flask) -> None:
    before = len(_sweep_threads())
    app.test_client().get("/sync/files/x")
    assert len(_sweep_threads()) == before


def test_compaction_marks_dropped_files_and_a_ref_coming_back_unmarks_them(
    make_app: Callable[..., Flask], root: Path, database_file: str
) -> None:
    app = make_app(
        {"VERDANT_FILE_SWEEP_INTERVAL": 0, "VERDANT_FILE_DELETE_AFTER": 0},
        file_storage=LocalFileStorage(root),
        disable_rebasing=True,
    )
    server: SyncServer = app.extensions["verdant"]
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    FilesClient(app).upload("f1", b"x")
    ref = {"@@type": "file", "id": "f1"}

    def set_file(value: object) -> None:
        alice.op(alice.operation("attachments/a", {"op": "set", "name": "file", "value": value}))

    def compact() -> None:
        for client in (alice, bob, alice, bob):
            (response,) = of_type(client.sync(since="known", resync_all=False), "sync-resp")
            if "ackThisNonce" in response:
                client.ack(nonce=response["ackThisNonce"])
            client.ack(timestamp=client.clock.now())
        server.compact("lib")

    def pending() -> bool:
        (row,) = file_rows(database_file)
        return row[-1] is not None

    alice.sync(
        operations=[
            alice.operation(
                "attachments/a", {"op": "initialize", "value": {"id": "a", "file": ref}}
            )
        ]
    )
    bob.sync()
    set_file(None)
    compact()
    assert pending()
    set_file(ref)  # an undo brings the ref back
    compact()
    assert not pending()
    set_file(None)
    compact()
    assert server.files.sweep() == 1
    assert stored_files(root) == []


def test_a_sweep_over_storage_that_keeps_failing_ends(
    make_app: Callable[..., Flask], root: Path, database_file: str
) -> None:
    class Broken(LocalFileStorage):
        def delete(self, info: FileInfo) -> None:
            raise OSError(5, "Input/output error")

    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=Broken(root))
    server: SyncServer = app.extensions["verdant"]
    with server.database.write() as tx:
        for i in range(250):
            tx.put_file(FileInfo("lib", f"f{i}", f"u{i}", "a.txt", "text/plain", 1, 1))
        tx.mark_files_unreferenced("lib", [f"f{i}" for i in range(250)], now_ms() - 2 * DAY_MS)
    assert server.files.sweep() == 0
    assert len(file_rows(database_file)) == 250
