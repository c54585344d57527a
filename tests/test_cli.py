"""``flask verdant ...``: info, libraries, evict-user, export/import and backup."""

from __future__ import annotations

import functools
import io
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from flask_verdant import LocalFileStorage
from flask_verdant.testing import VerdantTestClient

from .helpers import dump_database
from .realtime_helpers import wait_for


def run(app: Flask, *args: str, input: str | None = None) -> Result:
    result: Result = app.test_cli_runner().invoke(args=["verdant", *args], input=input)
    return result


def item(client: VerdantTestClient, name: str, **fields: Any) -> dict[str, Any]:
    return client.operation(f"items/{name}", {"op": "initialize", "value": {"id": name, **fields}})


def library_rows(path: str, library_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that belongs to ``library_id``, table by table."""
    return {
        table: [row for row in rows if library_id in row]
        for table, rows in dump_database(path).items()
    }


def populate(app: Flask, library_id: str = "lib", *, with_file: bool = True) -> None:
    """A library with history, baselines, two users' replicas, acks and a file."""
    ada = VerdantTestClient(app, library_id=library_id, user_id="ada")
    bob = VerdantTestClient(app, library_id=library_id, user_id="bob")
    ada.sync()
    ada.op(item(ada, "one", text="héllo"), item(ada, "two", n=1.5))
    bob.sync()
    bob.op(bob.operation("items/one", {"op": "set", "name": "done", "value": True}))
    for _ in range(3):  # pull replicas are acknowledged one poll behind
        for client in (ada, bob):
            for message in client.sync(since=client.clock.now(), resync_all=False):
                if "ackThisNonce" in message:
                    client.ack(nonce=message["ackThisNonce"])
    with app.app_context():
        app.extensions["verdant"].compact(library_id)
    ada.op(item(ada, "three", tags=None))
    if not with_file:
        return
    upload = app.test_client().post(
        "/sync/files/photo",
        headers={"Authorization": f"Bearer {ada.token}"},
        data={"file": (io.BytesIO(b"jpeg bytes"), "photo.jpg", "image/jpeg")},
    )
    assert upload.status_code == 200


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    # No background compaction: the tests compare rows before and after.
    return make_app(disable_rebasing=True, file_storage=LocalFileStorage(tmp_path / "files"))


# -- info, libraries, evict-user ---------------------------------------------------------------


def test_info_on_an_unknown_library_is_an_error(app: Flask, database_file: str) -> None:
    result = run(app, "info", "nope")
    assert result.exit_code == 1
    assert f"No library 'nope' in {database_file}" in result.stderr


def test_info_prints_a_known_library(app: Flask) -> None:
    populate(app)
    result = run(app, "info", "lib")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert {r["userId"] for r in info["replicas"]} == {"ada", "bob"}


def test_libraries_lists_size_replicas_and_last_activity(app: Flask) -> None:
    populate(app, "groceries")
    VerdantTestClient(app, library_id="chores", user_id="cy").sync()
    listed = json.loads(run(app, "libraries", "--json").stdout)
    assert [entry["id"] for entry in listed] == ["chores", "groceries"]
    groceries = listed[1]
    with app.app_context():
        info = app.extensions["verdant"].library_info("groceries")
    assert groceries["operations"] == info["operationsCount"] > 0
    assert groceries["baselines"] == info["baselinesCount"] > 0
    assert groceries["replicas"] == 2
    assert groceries["bytes"] > 0
    assert groceries["lastSeen"] is not None
    table = run(app, "libraries")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["library", "operations", "baselines"]
    assert lines[2].split()[:5] == [
        "groceries",
        str(groceries["operations"]),
        str(groceries["baselines"]),
        str(groceries["bytes"]),
        "2",
    ]


def test_evict_user_forgets_the_users_replicas(app: Flask) -> None:
    populate(app)
    result = run(app, "evict-user", "lib", "bob", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "Forgot 1 replica(s) of bob" in result.stdout
    with app.app_context():
        users = {r["userId"] for r in app.extensions["verdant"].library_info("lib")["replicas"]}
    assert users == {"ada"}
    again = run(app, "evict-user", "lib", "bob", "--yes")
    assert again.exit_code == 1
    assert "no replicas" in again.stderr
    assert run(app, "evict-user", "nope", "bob", "--yes").exit_code == 1


def test_evict_user_asks_first(app: Flask) -> None:
    populate(app)
    result = run(app, "evict-user", "lib", "bob", input="n\n")
    assert result.exit_code == 1
    with app.app_context():
        replicas = app.extensions["verdant"].library_info("lib")["replicas"]
    assert len(replicas) == 2


# -- export and import ---------------------------------------------------------------------------


def test_export_then_import_round_trips_a_library_exactly(
    app: Flask, make_app: Callable[..., Flask], tmp_path: Path, database_file: str
) -> None:
    populate(app)
    exported = run(app, "export", "lib")
    assert exported.exit_code == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["format"] == "flask-verdant-library"
    assert {"libraries", "replicas", "operations", "baselines", "files"} <= set(document["tables"])
    other_file = str(tmp_path / "other.sqlite3")
    other = make_app(database_file=other_file, disable_rebasing=True)
    path = tmp_path / "lib.json"
    path.write_text(exported.stdout, encoding="utf-8")
    imported = run(other, "import", str(path))
    assert imported.exit_code == 0, imported.stderr
    assert library_rows(other_file, "lib") == library_rows(database_file, "lib")
    assert json.loads(run(other, "export", "lib").stdout) == document
    # The imported library serves: a known replica syncs on without a reset.
    with other.app_context():
        info = other.extensions["verdant"].library_info("lib")
    assert info["operationsCount"] == len(document["tables"]["operations"])


def test_import_under_another_name_and_refusals(app: Flask, tmp_path: Path) -> None:
    # Without files: an upload belongs to one library (its id is unique in the database).
    populate(app, with_file=False)
    path = tmp_path / "lib.json"
    path.write_text(run(app, "export", "lib").stdout, encoding="utf-8")
    before = dump_database(app.extensions["verdant"].database.path)
    existing = run(app, "import", str(path))
    assert existing.exit_code == 1
    assert "already exists" in existing.stderr
    assert dump_database(app.extensions["verdant"].database.path) == before
    copied = run(app, "import", str(path), "--library", "copy")
    assert copied.exit_code == 0, copied.stderr
    original = json.loads(run(app, "export", "lib").stdout)
    copy = json.loads(run(app, "export", "copy").stdout)
    assert copy == {**original, "libraryId": "copy"}
    for bad in (
        '{"format": "something else"}',
        "not json",
        '{"format": "flask-verdant-library",'
        ' "version": 1, "libraryId": "x", "tables": {"operations": [{"evil": 1}]}}',
    ):
        path.write_text(bad, encoding="utf-8")
        result = run(app, "import", str(path))
        assert result.exit_code == 1, bad
    assert run(app, "info", "x").exit_code == 1  # nothing half-written


def test_export_of_an_unknown_library_is_an_error(app: Flask) -> None:
    result = run(app, "export", "nope")
    assert result.exit_code == 1
    assert "No library 'nope'" in result.stderr


# -- backup --------------------------------------------------------------------------------------


def stored_operations(path: str) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM operations").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        connection.close()


def grew(path: str, seen: int) -> int:
    """The number of stored operations if it is above ``seen``, else 0."""
    now = stored_operations(path)
    return now if now > seen else 0


def test_backup_is_consistent_while_others_write(
    app: Flask, tmp_path: Path, database_file: str
) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def write(user: str) -> None:
        client = VerdantTestClient(app, library_id=f"lib-{user}", user_id=user)
        try:
            client.sync()
            number = 0
            while not stop.is_set():
                number += 1
                client.op(*(item(client, f"{number}-{k}") for k in range(5)))
        except BaseException as error:  # reported by the test below
            failures.append(error)

    writers = [threading.Thread(target=write, args=(user,)) for user in ("ada", "bob", "cy")]
    for writer in writers:
        writer.start()
    try:
        backups = []
        seen = 0
        for number in range(4):
            # Writes go on between and during the backups.
            seen = wait_for(functools.partial(grew, database_file, seen))
            target = tmp_path / f"backup-{number}.sqlite3"
            result = run(app, "backup", str(target))
            assert result.exit_code == 0, result.stderr
            backups.append(target)
    finally:
        stop.set()
        for writer in writers:
            writer.join(10)
    assert failures == []
    counts = []
    for target in backups:
        assert not Path(f"{target}.partial").exists()
        connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            rows = connection.execute(
                """SELECT l.lastServerOrder, COUNT(o.serverOrder), MAX(o.serverOrder)
                   FROM libraries l LEFT JOIN operations o ON o.libraryId = l.id
                   GROUP BY l.id"""
            ).fetchall()
        finally:
            connection.close()
        # Each op request is one transaction of five operations: a snapshot holds whole ones.
        for last, count, highest in rows:
            assert last == count == (highest or 0)
            assert count % 5 == 0
        counts.append(sum(count for _, count, _ in rows))
    assert counts == sorted(counts) and counts[-1] > 0


def test_backup_refuses_to_overwrite_unless_asked(app: Flask, tmp_path: Path) -> None:
    populate(app)
    target = tmp_path / "backup.sqlite3"
    target.write_bytes(b"precious")
    refused = run(app, "backup", str(target))
    assert refused.exit_code == 1
    assert target.read_bytes() == b"precious"
    assert run(app, "backup", str(target), "--overwrite").exit_code == 0
    connection = sqlite3.connect(target)
    try:
        assert connection.execute("SELECT COUNT(*) FROM operations").fetchone()[0] > 0
    finally:
        connection.close()
