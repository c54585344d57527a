"""Group commit in isolation: shared syncs, and nothing acknowledged after a failed sync."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from flask_verdant.storage.durability import GroupCommit


def wal_database(tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    path = str(tmp_path / "db.sqlite3")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE t (x)")
    return path, connection


def test_after_a_failed_sync_nothing_is_acknowledged_any_more(tmp_path: Path) -> None:
    """A later fsync that succeeds may not hold the pages the failed one dropped."""
    path, connection = wal_database(tmp_path)
    group = GroupCommit(path)
    connection.execute("INSERT INTO t VALUES (1)")
    ticket = group.committed()

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    group.fsync = broken
    with pytest.raises(OSError):
        group.wait(ticket)
    group.fsync = os.fsync
    connection.execute("INSERT INTO t VALUES (2)")
    for waiting in (ticket, group.committed()):
        with pytest.raises(OSError, match="earlier fsync"):
            group.wait(waiting)
    assert group.syncs == 0


def test_waiters_during_a_sync_share_the_next_one(tmp_path: Path) -> None:
    path, connection = wal_database(tmp_path)
    group = GroupCommit(path)
    started, release = threading.Event(), threading.Event()

    def slow(fd: int) -> None:
        started.set()
        assert release.wait(5)
        os.fsync(fd)

    group.fsync = slow
    connection.execute("INSERT INTO t VALUES (0)")
    first = threading.Thread(target=group.wait, args=(group.committed(),))
    first.start()
    assert started.wait(5)
    waiters = []
    for n in range(5):
        connection.execute("INSERT INTO t VALUES (?)", (n,))
        waiters.append(threading.Thread(target=group.wait, args=(group.committed(),)))
    for thread in waiters:
        thread.start()
    release.set()
    for thread in [first, *waiters]:
        thread.join(5)
        assert not thread.is_alive()
    assert group.syncs == 2
