from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flask_verdant.errors import ErrorCode, VerdantError
from flask_verdant.storage import Database
from flask_verdant.storage.database import Transaction
from flask_verdant.storage.schema import SCHEMA_VERSION
from flask_verdant.tokens import ReplicaType


def op(oid: str, timestamp: str) -> dict[str, object]:
    return {"oid": oid, "timestamp": timestamp, "data": {"op": "set", "name": "x", "value": 1}}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(str(tmp_path / "store.sqlite3"))
    yield db
    db.close()


def test_connections_use_wal_and_normal_sync(database: Database) -> None:
    with database.read() as tx:
        connection = tx._db
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_schema_version_is_recorded_and_operations_are_indexed(database: Database) -> None:
    database.migrate()
    raw = sqlite3.connect(database.path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    plan = raw.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM operations WHERE libraryId = 'l' AND serverOrder > 3"
    ).fetchall()
    assert "PRIMARY KEY" in str(plan) or "INDEX" in str(plan)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "future.sqlite3")
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="schema version"):
        Database(path).migrate()


def _lock_new_file(path: Path) -> sqlite3.Connection:
    """A new database file another process is switching to WAL: it holds an exclusive lock."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE first (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_new_file_another_process_holds_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    """Two workers' first requests on one new file: the second waits for the first's lock
    instead of failing (it answered its client with a 500)."""
    path = tmp_path / "new.sqlite3"
    holder = _lock_new_file(path)
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    database = Database(str(path))
    try:
        with database.read() as tx:
            assert tx.schema_version() == SCHEMA_VERSION
            assert tx._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        database.close()
        holder.close()


def test_a_new_file_locked_past_the_busy_timeout_is_a_retry_later(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    holder = _lock_new_file(path)
    database = Database(str(path), busy_timeout_ms=200)
    try:
        with pytest.raises(VerdantError) as caught, database.read():
            pass
        assert caught.value.code == ErrorCode.UNAVAILABLE
    finally:
        database.close()
        holder.close()


def test_failed_transaction_leaves_nothing(database: Database) -> None:
    with pytest.raises(ZeroDivisionError), database.write() as tx:
        tx.ensure_library("l")
        tx.insert_operations("l", "r", [op("a", "t1")])
        raise ZeroDivisionError
    with database.read() as tx:
        assert tx.count_operations("l") == 0
        assert tx.last_server_order("l") == 0


def test_server_order_counter_survives_deleted_rows(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        tx.insert_operations("l", "r", [op("a", "t1"), op("a", "t2")])
        tx._db.execute("DELETE FROM operations WHERE serverOrder = 2")
        tx.insert_operations("l", "r", [op("a", "t3")])
        orders = [row.server_order for row in tx.operations_after("l", 0)]
    assert orders == [1, 3]


def test_duplicate_operations_get_no_new_server_order(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        assert len(tx.insert_operations("l", "r1", [op("a", "t1"), op("a", "t2")])) == 2
        assert len(tx.insert_operations("l", "r2", [op("a", "t2"), op("b", "t3")])) == 1
        rows = tx.operations_after("l", 0)
    assert [(r.server_order, r.oid, r.timestamp) for r in rows] == [
        (1, "a", "t1"),
        (2, "a", "t2"),
        (3, "b", "t3"),
    ]


def test_operations_at_or_before_a_baseline_are_not_stored_again(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        tx.replace_baseline("l", "a", {"v": 2}, "t2")
        stored = tx.insert_operations("l", "r", [op("a", "t1"), op("a", "t2"), op("a", "t3")])
    assert [operation["timestamp"] for operation in stored] == ["t3"]


def test_a_batch_that_repeats_an_operation_stores_it_once(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        stored = tx.insert_operations("l", "r", [op("a", "t1"), op("b", "t2"), op("a", "t1")])
        assert [o["oid"] for o in stored] == ["a", "b"]
        assert tx.last_server_order("l") == 2


def test_a_baseline_is_only_known_to_its_replica_without_others_edits(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        tx.insert_operations("l", "mine", [op("a", "t1"), op("b", "t1")])
        tx.insert_operations("l", "other", [op("b", "t2")])
        tx.replace_baseline("l", "c", {"v": 1}, "t0")
        keys = [("a", "t5"), ("a", "t1"), ("b", "t5"), ("c", "t5"), ("new", "t5")]
        assert tx.only_known_to("l", "mine", keys) == [True, False, False, False, True]


def _steps(tx: Transaction, call: Callable[[], object]) -> int:
    """sqlite virtual machine steps (in thousands) that ``call`` takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    tx._db.set_progress_handler(count, 1000)
    try:
        call()
    finally:
        tx._db.set_progress_handler(None, 0)
    return steps


def test_checking_a_syncs_history_costs_per_item_not_per_stored_operation(
    database: Database,
) -> None:
    """A sync's operations and baselines are checked against the library by index: a big
    library must not make each of them cost a scan of its history (the baseline check once
    did, which held the library's lock for seconds on a 2,000-document upload)."""

    def cost(history: int) -> int:
        library = f"l{history}"
        with database.write() as tx:
            tx.ensure_library(library)
            tx.insert_operations(library, "r", [op(f"d{n}", "t1") for n in range(history)])
            keys = [(f"new{n}", "t2") for n in range(200)]
            return _steps(tx, lambda: tx.only_known_to(library, "other", keys)) + _steps(
                tx, lambda: tx.insert_operations(library, "other", [op(*k) for k in keys])
            )

    small, large = cost(200), cost(8000)
    assert large <= 2 * small + 5, (small, large)


def test_concurrent_writers_get_distinct_contiguous_server_orders(database: Database) -> None:
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for n in range(20):
                with database.write() as tx:
                    tx.ensure_library("l")
                    tx.insert_operations("l", f"r{index}", [op("a", f"t{index}-{n:02}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.read() as tx:
        orders = [row.server_order for row in tx.operations_after("l", 0)]
    assert orders == list(range(1, 121))


def test_forked_child_opens_its_own_connections(database: Database) -> None:
    with database.write() as tx:
        tx.ensure_library("l")
        tx.create_replica("l", "parent", "u", ReplicaType.REALTIME)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            with database.write() as tx:
                tx.create_replica("l", "child", "u", ReplicaType.REALTIME)
            os.write(write_end, b"ok")
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1000) == b"ok"
    with database.read() as tx:
        assert {r.replica_id for r in tx.list_replicas("l")} == {"parent", "child"}
