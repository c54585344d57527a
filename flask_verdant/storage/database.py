"""The database handle and the queries of one transaction.

Writers start with ``BEGIN IMMEDIATE``: in WAL mode a deferred transaction that reads and then
writes fails with SQLITE_BUSY at once instead of waiting for the busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import json_codec
from ..authz import key_for
from ..files.records import FileInfo
from ..json_codec import RawJSON
from ..tokens import ReplicaType
from .pool import ConnectionPool
from .records import BaselineRow, OperationRow, OperationsJSON, ReplicaRecord
from .schema import migrate

_REPLICA_COLUMNS = (
    "libraryId, id, userId, type, ackedLogicalTime, ackedServerOrder, lastSeen, "
    "lastSyncTimestamp, awaitingHistory, patchModel"
)


class Database:
    """Owns the sqlite file: connection settings, migrations and transactions."""

    def __init__(self, path: str, pool_size: int = 8, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._pool = ConnectionPool(self._connect, max_size=pool_size)
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    def migrate(self) -> None:
        with self._migrate_lock:
            if self._migrated:
                return
            with self._pool.connection() as connection:
                migrate(connection)
            self._migrated = True

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """One atomic read-then-write unit: committed on success, rolled back on any error."""
        with self._transaction("BEGIN IMMEDIATE") as transaction:
            yield transaction

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A consistent snapshot for reads; writing through it is a bug."""
        with self._transaction("BEGIN") as transaction:
            yield transaction

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Transaction]:
        self.migrate()
        with self._pool.connection() as connection:
            connection.execute(begin)
            try:
                yield Transaction(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        self._pool.close()


class Transaction:
    """Every query the server runs, within one open transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    # libraries

    def ensure_library(self, library_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO libraries (id) VALUES (?)", (library_id,))

    def last_server_order(self, library_id: str) -> int:
        row = self._db.execute(
            "SELECT lastServerOrder FROM libraries WHERE id = ?", (library_id,)
        ).fetchone()
        return int(row[0]) if row else 0

    def stored_global_ack(self, library_id: str) -> str | None:
        row = self._db.execute(
            "SELECT globalAck FROM libraries WHERE id = ?", (library_id,)
        ).fetchone()
        return row[0] if row else None

    def set_global_ack(self, library_id: str, timestamp: str) -> None:
        self._db.execute("UPDATE libraries SET globalAck = ? WHERE id = ?", (timestamp, library_id))

    def is_library_empty(self, library_id: str) -> bool:
        row = self._db.execute(
            """SELECT EXISTS (SELECT 1 FROM operations WHERE libraryId = ?)
                   OR EXISTS (SELECT 1 FROM baselines WHERE libraryId = ?)""",
            (library_id, library_id),
        ).fetchone()
        return not row[0]

    def delete_library(self, library_id: str) -> None:
        for table, column in (
            ("operations", "libraryId"),
            ("baselines", "libraryId"),
            ("quarantine", "libraryId"),
            ("replicas", "libraryId"),
            ("fileAccess", "libraryId"),
            ("libraries", "id"),
        ):
            self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (library_id,))

    # replicas

    def get_replica(self, library_id: str, replica_id: str) -> ReplicaRecord | None:
        row = self._db.execute(
            f"SELECT {_REPLICA_COLUMNS} FROM replicas WHERE libraryId = ? AND id = ?",
            (library_id, replica_id),
        ).fetchone()
        return _replica(row) if row else None

    def list_replicas(self, library_id: str) -> list[ReplicaRecord]:
        rows = self._db.execute(
            f"SELECT {_REPLICA_COLUMNS} FROM replicas WHERE libraryId = ? ORDER BY id",
            (library_id,),
        ).fetchall()
        return [_replica(row) for row in rows]

    def create_replica(
        self, library_id: str, replica_id: str, user_id: str, type: ReplicaType
    ) -> ReplicaRecord:
        self._db.execute(
            "INSERT INTO replicas (libraryId, id, userId, type) VALUES (?, ?, ?, ?)",
            (library_id, replica_id, user_id, int(type)),
        )
        return ReplicaRecord(library_id, replica_id, user_id, type, None, 0, None)

    def set_replica_type(self, library_id: str, replica_id: str, type: ReplicaType) -> None:
        self._db.execute(
            "UPDATE replicas SET type = ? WHERE libraryId = ? AND id = ?",
            (int(type), library_id, replica_id),
        )

    def delete_replica(self, library_id: str, replica_id: str) -> None:
        self._db.execute(
            "DELETE FROM replicas WHERE libraryId = ? AND id = ?", (library_id, replica_id)
        )

    def delete_user_replicas(self, library_id: str, user_id: str) -> int:
        cursor = self._db.execute(
            "DELETE FROM replicas WHERE libraryId = ? AND userId = ?", (library_id, user_id)
        )
        return cursor.rowcount

    def set_patch_model(self, library_id: str, replica_id: str, model: str) -> bool:
        """Record the operation model the replica's client folds with; True if it changed."""
        cursor = self._db.execute(
            """UPDATE replicas SET patchModel = ?
               WHERE libraryId = ? AND id = ? AND patchModel != ?""",
            (model, library_id, replica_id, model),
        )
        return bool(cursor.rowcount)

    def touch_replica(self, library_id: str, replica_id: str, now_ms: int) -> None:
        self._db.execute(
            "UPDATE replicas SET lastSeen = ? WHERE libraryId = ? AND id = ?",
            (now_ms, library_id, replica_id),
        )

    def advance_acked_logical_time(self, library_id: str, replica_id: str, timestamp: str) -> None:
        """Raise, never lower: a replica's clock is monotonic, so an older ack is stale."""
        self._db.execute(
            """UPDATE replicas SET ackedLogicalTime = ?
               WHERE libraryId = ? AND id = ?
                 AND (ackedLogicalTime IS NULL OR ackedLogicalTime < ?)""",
            (timestamp, library_id, replica_id, timestamp),
        )

    def advance_acked_server_order(
        self, library_id: str, replica_id: str, server_order: int
    ) -> None:
        self._db.execute(
            """UPDATE replicas SET ackedServerOrder = ?
               WHERE libraryId = ? AND id = ? AND ackedServerOrder < ?""",
            (server_order, library_id, replica_id, server_order),
        )

    def record_sync(
        self, library_id: str, replica_id: str, timestamp: str, awaiting_history: bool
    ) -> None:
        self._db.execute(
            """UPDATE replicas SET lastSyncTimestamp = ?, awaitingHistory = ?
               WHERE libraryId = ? AND id = ?""",
            (timestamp, int(awaiting_history), library_id, replica_id),
        )

    def reset_replica_acks(self, library_id: str, replica_id: str) -> None:
        """The replica is about to replace its data with the server's complete state."""
        self._db.execute(
            """UPDATE replicas SET ackedServerOrder = 0, ackedLogicalTime = NULL
               WHERE libraryId = ? AND id = ?""",
            (library_id, replica_id),
        )

    def min_acked_logical_time(
        self, library_id: str, seen_since_ms: int, types: Iterable[ReplicaType]
    ) -> str | None:
        type_values = [int(t) for t in types]
        marks = ",".join("?" for _ in type_values)
        row = self._db.execute(
            f"""SELECT MIN(ackedLogicalTime) FROM replicas
                WHERE libraryId = ? AND lastSeen > ? AND type IN ({marks})
                  AND ackedLogicalTime IS NOT NULL AND ackedLogicalTime != ''""",
            (library_id, seen_since_ms, *type_values),
        ).fetchone()
        return row[0] if row else None

    # operations

    def insert_operations(
        self, library_id: str, replica_id: str, operations: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Append new operations with fresh server orders and return those that were new.

        An operation is identified by (oid, timestamp): the timestamp carries the writer's node
        id, so a re-sent or relayed copy is the same operation and is not stored twice. One at
        or before its document's baseline was already folded into it and is skipped too.
        """
        if not operations:
            return []
        last = self.last_server_order(library_id)
        inserted: list[dict[str, Any]] = []
        for operation in operations:
            oid, timestamp = operation["oid"], operation["timestamp"]
            cursor = self._db.execute(
                """INSERT INTO operations
                       (libraryId, serverOrder, oid, timestamp, replicaId, data, authz)
                   SELECT ?, ?, ?, ?, ?, ?, ?
                   WHERE NOT EXISTS (
                       SELECT 1 FROM baselines
                       WHERE libraryId = ? AND oid = ? AND timestamp >= ?)
                   ON CONFLICT (libraryId, oid, timestamp) DO NOTHING""",
                (
                    library_id,
                    last + len(inserted) + 1,
                    oid,
                    timestamp,
                    replica_id,
                    json_codec.dumps(operation["data"]),
                    operation.get("authz"),
                    library_id,
                    oid,
                    timestamp,
                ),
            )
            if cursor.rowcount:
                inserted.append(operation)
        if inserted:
            self._db.execute(
                "UPDATE libraries SET lastServerOrder = ? WHERE id = ?",
                (last + len(inserted), library_id),
            )
        return inserted

    def only_known_to(self, library_id: str, oid: str, replica_id: str, timestamp: str) -> bool:
        """Whether a replica's baseline of ``oid`` at ``timestamp`` can hold nothing of others.

        True when the server has no baseline of it and every stored operation on it came from
        that replica, none at that very timestamp.
        """
        row = self._db.execute(
            """SELECT EXISTS (SELECT 1 FROM baselines WHERE libraryId = ? AND oid = ?)
                   OR EXISTS (SELECT 1 FROM operations WHERE libraryId = ? AND oid = ?
                              AND (replicaId != ? OR timestamp = ?))""",
            (library_id, oid, library_id, oid, replica_id, timestamp),
        ).fetchone()
        return not row[0]

    def operations_after(self, library_id: str, server_order: int) -> list[OperationRow]:
        rows = self._db.execute(
            f"""SELECT {_OPERATION_ROW}
               FROM operations AS o
               WHERE o.libraryId = ? AND o.serverOrder > ? ORDER BY o.serverOrder""",
            (library_id, server_order),
        ).fetchall()
        return list(map(OperationRow._make, rows))

    def operations_json_after(
        self, library_id: str, server_order: int, reader: str
    ) -> OperationsJSON:
        """``operations_after`` as the array of ``{oid, timestamp, data, authz?}`` a sync answer
        holds, with only what the user ``reader`` may read; the last server order counts every
        operation, so that the reader's acknowledgement passes the others' private ones too."""
        array, last = self._db.execute(
            f"""SELECT json_group_array(CASE WHEN authz IS NULL
                          THEN json_object('oid', oid, 'timestamp', timestamp, 'data', json(data))
                          ELSE json_object('oid', oid, 'timestamp', timestamp, 'data', json(data),
                                           'authz', authz) END) FILTER (WHERE {_READABLE}),
                      COALESCE(MAX(serverOrder), 0)
               FROM (SELECT serverOrder, oid, timestamp, data, authz FROM operations
                     WHERE libraryId = ? AND serverOrder > ? ORDER BY serverOrder)""",
            (key_for(reader), library_id, server_order),
        ).fetchone()
        return OperationsJSON(RawJSON(array), int(last))

    def min_acked_server_order(self, library_id: str, seen_since_ms: int) -> int | None:
        """The lowest server order every recently seen replica (of any type) has received."""
        row = self._db.execute(
            """SELECT MIN(ackedServerOrder) FROM replicas
               WHERE libraryId = ? AND lastSeen > ?""",
            (library_id, seen_since_ms),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def foldable_operations(
        self, library_id: str, before_timestamp: str, max_server_order: int, limit: int
    ) -> list[OperationRow]:
        """Operations compaction may fold, grouped by document, each in time order.

        One qualifies when it is older than the global ack, every replica has received it, its
        document is not quarantined, and no earlier operation of its document is still unseen
        by some replica (the hard stop: folding past that one would reorder history).
        """
        rows = self._db.execute(
            f"""SELECT {_OPERATION_ROW}
               FROM operations AS o
               WHERE o.libraryId = ? AND o.timestamp < ? AND o.serverOrder <= ?
                 AND NOT EXISTS (
                     SELECT 1 FROM quarantine AS q
                     WHERE q.libraryId = o.libraryId AND q.oid = o.oid)
                 AND NOT EXISTS (
                     SELECT 1 FROM operations AS e
                     WHERE e.libraryId = o.libraryId AND e.oid = o.oid
                       AND e.timestamp < o.timestamp AND e.serverOrder > ?)
               ORDER BY o.oid, o.timestamp LIMIT ?""",
            (library_id, before_timestamp, max_server_order, max_server_order, limit),
        ).fetchall()
        return list(map(OperationRow._make, rows))

    def operations_of(self, library_id: str, oid: str) -> list[OperationRow]:
        rows = self._db.execute(
            f"""SELECT {_OPERATION_ROW}
               FROM operations AS o
               WHERE o.libraryId = ? AND o.oid = ? ORDER BY o.timestamp""",
            (library_id, oid),
        ).fetchall()
        return list(map(OperationRow._make, rows))

    def delete_operations(self, library_id: str, server_orders: list[int]) -> None:
        self._db.executemany(
            "DELETE FROM operations WHERE libraryId = ? AND serverOrder = ?",
            [(library_id, order) for order in server_orders],
        )

    def server_order_of_timestamp(self, library_id: str, timestamp: str) -> int:
        row = self._db.execute(
            """SELECT MAX(serverOrder) FROM operations
               WHERE libraryId = ? AND timestamp = ?""",
            (library_id, timestamp),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def count_operations(self, library_id: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM operations WHERE libraryId = ?", (library_id,)
        ).fetchone()
        return int(row[0])

    # baselines

    def baselines_json_after(self, library_id: str, timestamp: str | None, reader: str) -> RawJSON:
        """Baselines newer than ``timestamp`` (all if None) that the user ``reader`` may read,
        as the JSON array a sync answer holds: ``{oid, snapshot, timestamp, authz?}`` in time
        order, built by sqlite (see ``OperationsJSON``).
        """
        newer = "AND timestamp > ?" if timestamp else ""
        parameters = (library_id, timestamp) if timestamp else (library_id,)
        row = self._db.execute(
            f"""SELECT json_group_array(CASE WHEN authz IS NULL
                          THEN json_object('oid', oid, 'snapshot', json(snapshot),
                                           'timestamp', timestamp)
                          ELSE json_object('oid', oid, 'snapshot', json(snapshot),
                                           'timestamp', timestamp, 'authz', authz) END)
                FROM (SELECT oid, snapshot, timestamp, authz FROM baselines
                      WHERE libraryId = ? {newer} AND {_READABLE}
                      ORDER BY timestamp, oid)""",
            (*parameters, key_for(reader)),
        ).fetchone()
        return RawJSON(row[0])

    def get_baseline(self, library_id: str, oid: str) -> BaselineRow | None:
        row = self._db.execute(
            """SELECT oid, snapshot, timestamp, authz FROM baselines
               WHERE libraryId = ? AND oid = ?""",
            (library_id, oid),
        ).fetchone()
        if row is None:
            return None
        return BaselineRow._make(row)

    def replace_baseline(
        self, library_id: str, oid: str, snapshot: Any, timestamp: str, authz: str | None = None
    ) -> None:
        self._db.execute(
            """INSERT OR REPLACE INTO baselines (libraryId, oid, snapshot, timestamp, authz)
               VALUES (?, ?, ?, ?, ?)""",
            (library_id, oid, json_codec.dumps(snapshot), timestamp, authz),
        )

    def delete_baseline(self, library_id: str, oid: str) -> None:
        self._db.execute("DELETE FROM baselines WHERE libraryId = ? AND oid = ?", (library_id, oid))

    def count_baselines(self, library_id: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM baselines WHERE libraryId = ?", (library_id,)
        ).fetchone()
        return int(row[0])

    # quarantine

    def quarantine(
        self, library_id: str, oid: str, timestamp: str, error: str, now_ms: int
    ) -> None:
        self._db.execute(
            """INSERT OR REPLACE INTO quarantine
                   (libraryId, oid, timestamp, error, quarantinedAt)
               VALUES (?, ?, ?, ?, ?)""",
            (library_id, oid, timestamp, error, now_ms),
        )

    def quarantined(self, library_id: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT oid, timestamp, error FROM quarantine WHERE libraryId = ? ORDER BY oid",
            (library_id,),
        ).fetchall()
        return {row[0]: {"timestamp": row[1], "error": row[2]} for row in rows}

    # files: upload metadata and the pending-deletion lifecycle (flask_verdant.files)

    def get_file(self, library_id: str, file_id: str) -> FileInfo | None:
        row = self._db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE libraryId = ? AND fileId = ?",
            (library_id, file_id),
        ).fetchone()
        return _file(row) if row else None

    def get_file_by_upload(self, upload_id: str) -> FileInfo | None:
        row = self._db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE uploadId = ?", (upload_id,)
        ).fetchone()
        return _file(row) if row else None

    def put_file(self, info: FileInfo) -> FileInfo | None:
        """Record an upload whose bytes are stored; returns the upload it replaces.

        A (re-)upload is a reference coming back, so it cancels a pending deletion.
        """
        previous = self.get_file(info.library_id, info.file_id)
        self._db.execute(
            f"INSERT OR REPLACE INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _file_values(info, pending_delete_at_ms=None),
        )
        return previous

    def restore_file(self, info: FileInfo) -> None:
        """Put back a row a sweep claimed but could not delete, unless the file came back."""
        self._db.execute(
            f"INSERT OR IGNORE INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _file_values(info, pending_delete_at_ms=info.pending_delete_at_ms),
        )

    def mark_files_unreferenced(
        self, library_id: str, file_ids: Iterable[str], now_ms: int
    ) -> None:
        """No document refers to these files any more: start their grace period.

        Unknown ids are ignored (the upload may come later, or the file lives elsewhere), and
        a file already pending keeps its earlier start.
        """
        self._db.executemany(
            """UPDATE files SET pendingDeleteAt = ?
               WHERE libraryId = ? AND fileId = ? AND pendingDeleteAt IS NULL""",
            [(now_ms, library_id, file_id) for file_id in file_ids],
        )

    def mark_files_referenced(self, library_id: str, file_ids: Iterable[str]) -> None:
        """A document refers to these files again (an undo, a restored list item): keep them."""
        self._db.executemany(
            """UPDATE files SET pendingDeleteAt = NULL
               WHERE libraryId = ? AND fileId = ? AND pendingDeleteAt IS NOT NULL""",
            [(library_id, file_id) for file_id in file_ids],
        )

    def files_pending_deletion(self, due_ms: int, limit: int) -> list[FileInfo]:
        """Files of every library whose grace period started at or before ``due_ms``."""
        rows = self._db.execute(
            f"""SELECT {_FILE_COLUMNS} FROM files
                WHERE pendingDeleteAt IS NOT NULL AND pendingDeleteAt <= ?
                ORDER BY pendingDeleteAt LIMIT ?""",
            (due_ms, limit),
        ).fetchall()
        return [_file(row) for row in rows]

    def claim_file_deletion(self, info: FileInfo, due_ms: int) -> bool:
        """Remove the row if it is still that upload and still due; True if it was."""
        cursor = self._db.execute(
            """DELETE FROM files
               WHERE libraryId = ? AND fileId = ? AND uploadId = ?
                 AND pendingDeleteAt IS NOT NULL AND pendingDeleteAt <= ?""",
            (info.library_id, info.file_id, info.upload_id, due_ms),
        )
        return cursor.rowcount == 1

    def note_file_references(
        self, library_id: str, references: Iterable[tuple[str, str | None]]
    ) -> None:
        """Record ``(fileId, authz)`` for files no operation referenced before: the first
        reference decides who may read a file, so a later one cannot take it over."""
        self._db.executemany(
            "INSERT OR IGNORE INTO fileAccess (libraryId, fileId, authz) VALUES (?, ?, ?)",
            [(library_id, file_id, key) for file_id, key in references],
        )

    def may_read_file(self, library_id: str, file_id: str, reader: str) -> bool:
        row = self._db.execute(
            "SELECT authz FROM fileAccess WHERE libraryId = ? AND fileId = ?",
            (library_id, file_id),
        ).fetchone()
        return row is None or row[0] is None or row[0] == key_for(reader)

    def delete_library_files(self, library_id: str) -> list[FileInfo]:
        """Remove every file row of the library; returns them so their bytes can go too."""
        rows = self._db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE libraryId = ? ORDER BY fileId",
            (library_id,),
        ).fetchall()
        self._db.execute("DELETE FROM files WHERE libraryId = ?", (library_id,))
        return [_file(row) for row in rows]


_FILE_COLUMNS = "libraryId, fileId, uploadId, name, type, size, uploadedAt, pendingDeleteAt"


# Who may read a row: everyone, or the one user whose canonical key (the parameter) it holds.
_READABLE = "(authz IS NULL OR authz = ?)"

# The operation model of the replica that wrote operation ``o``: a replica the server no longer
# knows (evicted) is assumed to be a store 3.x client, the model that never drops a file ref
# the other line would keep.
_AUTHOR_MODEL = """COALESCE((SELECT r.patchModel FROM replicas AS r
                            WHERE r.libraryId = o.libraryId AND r.id = o.replicaId),
                           'common2')"""
# The columns of an ``OperationRow``, from ``operations AS o``.
_OPERATION_ROW = f"o.serverOrder, o.replicaId, o.oid, o.timestamp, o.data, o.authz, {_AUTHOR_MODEL}"


def _file_values(info: FileInfo, *, pending_delete_at_ms: int | None) -> tuple[Any, ...]:
    """A files row in ``_FILE_COLUMNS`` order."""
    return (
        info.library_id,
        info.file_id,
        info.upload_id,
        info.name,
        info.type,
        info.size,
        info.uploaded_at_ms,
        pending_delete_at_ms,
    )


def _file(row: tuple[Any, ...]) -> FileInfo:
    return FileInfo(
        library_id=row[0],
        file_id=row[1],
        upload_id=row[2],
        name=row[3],
        type=row[4],
        size=int(row[5]),
        uploaded_at_ms=int(row[6]),
        pending_delete_at_ms=row[7],
    )


def _replica(row: tuple[Any, ...]) -> ReplicaRecord:
    return ReplicaRecord(
        library_id=row[0],
        replica_id=row[1],
        user_id=row[2],
        type=ReplicaType(row[3]),
        acked_logical_time=row[4],
        acked_server_order=int(row[5]),
        last_seen_ms=row[6],
        last_sync_timestamp=row[7],
        awaiting_history=bool(row[8]),
        patch_model=row[9],
    )
