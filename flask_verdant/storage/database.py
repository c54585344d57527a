"""The database handle and the queries of one transaction.

Writers start with ``BEGIN IMMEDIATE``: in WAL mode a deferred transaction that reads and then
writes fails with SQLITE_BUSY at once instead of waiting for the busy timeout.

Writers of one process also take a process-wide lock first. Under gevent every greenlet shares
one OS thread, and sqlite's busy handler sleeps that thread: a greenlet that yielded inside its
write transaction (publishing to a message queue does) would leave another greenlet's
``BEGIN IMMEDIATE`` sleeping the whole worker until the busy timeout. Waiting on the lock
instead yields. Across processes, sqlite's own lock orders writers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import json_codec
from ..authz import key_for
from ..errors import ErrorCode, VerdantError
from ..files.records import FileInfo
from ..global_ack import GlobalAck, Waiting
from ..json_codec import RawJSON
from ..tokens import ReplicaType
from .durability import GroupCommit
from .pool import ConnectionPool
from .records import BaselineRow, OperationRow, OperationsJSON, ReplicaRecord
from .schema import migrate

_REPLICA_COLUMNS = (
    "libraryId, id, userId, type, ackedLogicalTime, ackedServerOrder, lastSeen, "
    "lastSyncTimestamp, awaitingHistory, patchModel"
)


class Database:
    """Owns the sqlite file: connection settings, migrations and transactions."""

    def __init__(
        self,
        path: str,
        pool_size: int = 8,
        busy_timeout_ms: int = 10_000,
        durability: str = "fsync",
    ) -> None:
        """``durability``: "fsync" makes ``wait_durable`` wait for the WAL's fsync (group
        commit, see ``durability``); "os" returns at once, leaving commits in the OS's cache,
        where a power loss or an OS crash can drop them."""
        if durability not in ("fsync", "os"):
            raise ValueError(f'durability must be "fsync" or "os", not {durability!r}')
        self.path = path
        self.group_commit = GroupCommit(path) if durability == "fsync" else None
        self._unsynced = threading.local()
        self._busy_timeout_ms = busy_timeout_ms
        self._pool = ConnectionPool(self._connect, max_size=pool_size)
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._open = threading.local()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        # sqlite's own wait for a busy database sleeps the whole thread, which under gevent is
        # the whole worker, including a greenlet of this process that holds the lock: so it
        # waits only briefly, and ``_begin`` retries with sleeps that let other greenlets run.
        connection.execute(f"PRAGMA busy_timeout = {min(_C_BUSY_MS, self._busy_timeout_ms)}")
        try:
            # Switching a new file to WAL takes an exclusive lock, which another process doing
            # the same (a second worker's first request) holds for a moment.
            self._when_free(lambda: connection.execute("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as exc:
            connection.close()
            raise _unavailable(exc) or exc from exc
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    def migrate(self) -> None:
        with self._migrate_lock:
            if self._migrated:
                return
            with self._pool.connection() as connection:
                migrate(connection, lambda: self._begin(connection, "BEGIN IMMEDIATE"))
            self._migrated = True

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Transaction]:
        """One atomic read-then-write unit: committed on success, rolled back on any error.

        A ``write()`` inside another one on the same thread (greenlet) joins it, so a caller can
        widen a unit: the server keeps a message's transaction open while it publishes the
        message's broadcasts. A ``durable`` commit is one the caller will acknowledge: its
        thread's next ``wait_durable`` waits for it (``durable=False`` for what a power loss may
        undo); a unit is durable if any of its parts asked.
        """
        current: Transaction | None = getattr(self._open, "transaction", None)
        if current is not None:
            self._open.durable = self._open.durable or durable
            yield current
            return
        self._open.durable = durable
        with self._write_lock, self._transaction("BEGIN IMMEDIATE") as transaction:
            self._open.transaction = transaction
            try:
                yield transaction
            finally:
                self._open.transaction = None
        if self._open.durable and self.group_commit is not None:
            self._unsynced.ticket = self.group_commit.committed()

    def wait_durable(self) -> None:
        """Return once every durable commit of this thread (greenlet) is on disk.

        Call it outside any transaction and lock that commits of others need: the commits
        that finish while an fsync is in flight share the next one.
        """
        ticket = getattr(self._unsynced, "ticket", 0)
        if ticket and self.group_commit is not None:
            self.group_commit.wait(ticket)
            self._unsynced.ticket = 0

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A consistent snapshot for reads; writing through it is a bug."""
        with self._transaction("BEGIN") as transaction:
            yield transaction

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Transaction]:
        self.migrate()
        with self._pool.connection() as connection:
            try:
                self._begin(connection, begin)
                try:
                    yield Transaction(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (disk full) may leave the transaction open, and the
                    # connection goes back to the pool: it must not carry one.
                    if connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) or exc from exc

    def _begin(self, connection: sqlite3.Connection, begin: str) -> None:
        """Open a transaction, waiting (cooperatively) up to the busy timeout for the lock."""
        self._when_free(lambda: connection.execute(begin))

    def _when_free(self, statement: Callable[[], object]) -> None:
        """Run ``statement``, again while the database is busy, up to the busy timeout.

        The waits are sleeps, which let other greenlets run (see ``_connect``)."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = 0.001
        while True:
            try:
                statement()
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0)
                if code & 0xFF != _SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)  # a greenlet switch under gevent
            pause = min(pause * 2, 0.05)

    def reachable(self) -> bool:
        """Whether a transaction can be opened and the schema read now (for readiness checks)."""
        try:
            with self.read() as transaction:
                transaction.schema_version()
        except (sqlite3.Error, OSError, RuntimeError):
            return False
        return True

    def backup(self, target: str) -> None:
        """Copy the database to ``target`` as one consistent snapshot, while others write.

        sqlite's online backup in a single step reads one snapshot (WAL lets writers go on
        meanwhile). The copy is made next to ``target``, switched out of WAL mode so it is one
        self-contained file, synced, and renamed into place: ``target`` is complete or absent.
        """
        self.migrate()
        partial = f"{target}.partial"
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        try:
            with self._pool.connection() as source:
                destination = sqlite3.connect(partial)
                try:
                    source.backup(destination)
                    destination.execute("PRAGMA journal_mode = DELETE")
                finally:
                    destination.close()
            with open(partial, "rb") as written:
                os.fsync(written.fileno())
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise

    def close(self) -> None:
        """Close once the transactions in flight are over, leaving the WAL copied into the
        database file (a checkpoint syncs both), so a stopped server leaves one whole file."""
        self._pool.close(last=_checkpoint)


def _checkpoint(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        # Another process may still be writing; it checkpoints when it stops.
        return


class Transaction:
    """Every query the server runs, within one open transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

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

    def global_ack_state(self, library_id: str) -> GlobalAck:
        """The published global ack and the values waiting to be (``global_ack``)."""
        row = self._db.execute(
            """SELECT globalAck, waitingAck, waitingAckSince, laterAck, laterAckSince
               FROM libraries WHERE id = ?""",
            (library_id,),
        ).fetchone()
        if row is None:
            return GlobalAck(None)
        waiting = tuple(
            Waiting(timestamp, since)
            for timestamp, since in ((row[1], row[2]), (row[3], row[4]))
            if timestamp is not None
        )
        return GlobalAck(row[0], waiting)

    def set_global_ack_state(self, library_id: str, state: GlobalAck) -> None:
        slots: list[tuple[str | None, int | None]] = [
            (w.timestamp, w.since_ms) for w in state.waiting
        ]
        slots += [(None, None)] * (2 - len(slots))
        self._db.execute(
            """UPDATE libraries SET globalAck = ?, waitingAck = ?, waitingAckSince = ?,
                   laterAck = ?, laterAckSince = ?
               WHERE id = ?""",
            (state.published, *slots[0], *slots[1], library_id),
        )

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

    # coordination between processes (flask_verdant.coordination)

    def record_event(
        self, kind: str, library_id: str, user_id: str | None, origin: str, now_ms: int
    ) -> int:
        """Append an administrative event; older ones than a day are dropped on the way."""
        self._db.execute("DELETE FROM events WHERE createdAt < ?", (now_ms - 86_400_000,))
        cursor = self._db.execute(
            """INSERT INTO events (kind, libraryId, userId, origin, createdAt)
               VALUES (?, ?, ?, ?, ?)""",
            (kind, library_id, user_id, origin, now_ms),
        )
        return int(cursor.lastrowid or 0)

    def events_after(self, seq: int) -> list[tuple[int, str, str, str | None, str]]:
        """(seq, kind, libraryId, userId, origin) of the events after ``seq``, in order."""
        rows = self._db.execute(
            "SELECT seq, kind, libraryId, userId, origin FROM events WHERE seq > ? ORDER BY seq",
            (seq,),
        ).fetchall()
        return [tuple(row) for row in rows]

    def last_event(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def beat_worker(self, worker_id: str, host: str, pid: int, broker: str, now_ms: int) -> None:
        self._db.execute(
            """INSERT INTO workers (id, host, pid, broker, startedAt, beatAt)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET beatAt = excluded.beatAt""",
            (worker_id, host, pid, broker, now_ms, now_ms),
        )

    def other_workers(
        self, worker_id: str, beat_since_ms: int
    ) -> list[tuple[str, str, int, str, int]]:
        """(id, host, pid, broker, startedAt) of the other processes that beat recently."""
        rows = self._db.execute(
            """SELECT id, host, pid, broker, startedAt FROM workers
               WHERE id != ? AND beatAt >= ? ORDER BY id""",
            (worker_id, beat_since_ms),
        ).fetchall()
        return [tuple(row) for row in rows]

    def remove_worker(self, worker_id: str, stale_before_ms: int = 0) -> None:
        """Forget a worker, and every worker that has not beaten since ``stale_before_ms``."""
        self._db.execute(
            "DELETE FROM workers WHERE id = ? OR beatAt < ?", (worker_id, stale_before_ms)
        )

    # replica ownership: permanent, eviction leaves it (schema migration 6)

    def replica_owners(self, library_id: str, replica_ids: Iterable[str]) -> dict[str, str]:
        """``replica id -> user id`` for those of ``replica_ids`` that are bound."""
        owners: dict[str, str] = {}
        for replica_id in replica_ids:
            row = self._db.execute(
                "SELECT userId FROM replica_owners WHERE libraryId = ? AND replicaId = ?",
                (library_id, replica_id),
            ).fetchone()
            if row:
                owners[replica_id] = row[0]
        return owners

    def count_user_replicas(self, library_id: str, user_id: str) -> int:
        """How many replica ids are bound to the user in the library."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM replica_owners WHERE libraryId = ? AND userId = ?",
            (library_id, user_id),
        ).fetchone()
        return int(row[0])

    def bind_replicas(self, library_id: str, user_id: str, replica_ids: Iterable[str]) -> None:
        """Bind unbound replica ids to ``user_id``; an existing binding is never changed."""
        self._db.executemany(
            "INSERT OR IGNORE INTO replica_owners (libraryId, replicaId, userId) VALUES (?, ?, ?)",
            [(library_id, replica_id, user_id) for replica_id in replica_ids],
        )

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
        or before its document's baseline was already folded into it and is skipped too. The
        known ones are found in one query and the rest stored in one statement: a first sync
        may bring a whole offline history (BENCHMARKS.md, newcomer).
        """
        if not operations:
            return []
        keys = [(operation["oid"], operation["timestamp"]) for operation in operations]
        known = self._keys_where(
            keys,
            """EXISTS (SELECT 1 FROM operations AS o
                       WHERE o.libraryId = ? AND o.oid = k.oid AND o.timestamp = k.timestamp)
               OR EXISTS (SELECT 1 FROM baselines AS b
                          WHERE b.libraryId = ? AND b.oid = k.oid
                            AND b.timestamp >= k.timestamp)""",
            (library_id, library_id),
        )
        last = self.last_server_order(library_id)
        new: set[tuple[str, str]] = set()
        inserted: list[dict[str, Any]] = []
        rows: list[tuple[Any, ...]] = []
        for index, (operation, key) in enumerate(zip(operations, keys, strict=True)):
            if index in known or key in new:
                continue
            new.add(key)
            inserted.append(operation)
            rows.append(
                (
                    library_id,
                    last + len(inserted),
                    *key,
                    replica_id,
                    json_codec.dumps(operation["data"]),
                    operation.get("authz"),
                )
            )
        if rows:
            self._db.executemany(
                """INSERT INTO operations
                       (libraryId, serverOrder, oid, timestamp, replicaId, data, authz)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            self._db.execute(
                "UPDATE libraries SET lastServerOrder = ? WHERE id = ?",
                (last + len(inserted), library_id),
            )
        return inserted

    def _keys_where(
        self, keys: list[tuple[str, str]], condition: str, parameters: tuple[Any, ...]
    ) -> set[int]:
        """The positions of the ``(oid, timestamp)`` keys for which ``condition`` holds, in one
        query over all of them (rows ``k``: see ``_KEYS``)."""
        rows = self._db.execute(
            f"{_KEYS} SELECT k.i FROM k WHERE {condition}", (json_codec.dumps(keys), *parameters)
        )
        return {index for (index,) in rows}

    def only_known_to(
        self, library_id: str, replica_id: str, keys: list[tuple[str, str]]
    ) -> list[bool]:
        """For each of a replica's baselines, as ``(oid, timestamp)``: whether it can hold
        nothing of others.

        True when the server has no baseline of it and every stored operation on it came from
        that replica, none at that very timestamp.
        """
        if not keys:
            return []
        shared = self._keys_where(
            keys,
            """EXISTS (SELECT 1 FROM baselines AS b WHERE b.libraryId = ? AND b.oid = k.oid)
               OR EXISTS (SELECT 1 FROM operations AS o
                          -- else sqlite scans the library's whole history
                          INDEXED BY operations_by_identity
                          WHERE o.libraryId = ? AND o.oid = k.oid AND o.replicaId != ?)
               OR EXISTS (SELECT 1 FROM operations AS o
                          WHERE o.libraryId = ? AND o.oid = k.oid
                            AND o.timestamp = k.timestamp)""",
            (library_id, library_id, replica_id, library_id),
        )
        return [index not in shared for index in range(len(keys))]

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
            f"""SELECT json_group_array({_OPERATION_JSON}) FILTER (WHERE {_READABLE}),
                      COALESCE(MAX(serverOrder), 0)
               FROM (SELECT serverOrder, oid, timestamp, data, authz FROM operations
                     WHERE libraryId = ? AND serverOrder > ? ORDER BY serverOrder)""",
            (key_for(reader), library_id, server_order),
        ).fetchone()
        return OperationsJSON(RawJSON(array), int(last))

    def reset_answer_json(self, library_id: str, reader: str) -> tuple[OperationsJSON, RawJSON]:
        """What a replica told to drop its data receives: every operation and baseline the user
        ``reader`` may read, as ``operations_json_after(…, 0, …)`` and ``baselines_json_after(…,
        None, …)`` give them, except that a document written as nothing but one ``initialize``
        per object, with no baseline, comes as those objects' baselines (after the stored ones,
        in server order): clients store a baseline much faster than they replay an operation,
        and a replica's offline history arrives as such documents (R2).

        Same state either way (docs/protocol.md, "Initial documents as baselines"): a baseline
        is the object's value at its timestamp, and no other operation of the document exists.
        The document of the newest operation the reader may read stays operations, because
        clients advance their clock by the operations they receive, not by baselines. The last
        server order still counts the converted operations, so the replica's acknowledgement
        covers them. The arrays are joined as text: each element is already JSON.
        """
        document = _document_of("oid")
        row = self._db.execute(
            f"""WITH
                -- documents that stay operations
                kept(doc) AS (
                    SELECT {document} FROM operations
                    WHERE libraryId = ?1 AND NOT ({_INITIALIZE_OF_OBJECT})
                    UNION SELECT {document} FROM operations INDEXED BY operations_by_identity
                          WHERE libraryId = ?1 GROUP BY oid HAVING COUNT(*) > 1
                    UNION SELECT {document} FROM baselines WHERE libraryId = ?1
                    UNION SELECT * FROM (
                          SELECT {document} FROM operations INDEXED BY operations_by_time
                          WHERE libraryId = ?1 AND {_READABLE_2}
                          ORDER BY timestamp DESC LIMIT 1))
            SELECT
                (SELECT COALESCE('[' || group_concat(operation, ',') || ']', '[]') FROM (
                    SELECT {_OPERATION_JSON} AS operation
                    FROM operations
                    WHERE libraryId = ?1 AND {_READABLE_2} AND {document} IN kept
                    ORDER BY serverOrder)),
                (SELECT COALESCE('[' || group_concat(baseline, ',') || ']', '[]') FROM (
                    SELECT baseline FROM (
                        SELECT {_baseline_json("json(snapshot)")} AS baseline
                        FROM baselines WHERE libraryId = ?1 AND {_READABLE_2}
                        ORDER BY timestamp, oid)
                    UNION ALL
                    SELECT {_baseline_json("data -> '$.value'")}
                    FROM operations
                    WHERE libraryId = ?1 AND {_READABLE_2} AND {document} NOT IN kept)),
                (SELECT COALESCE(MAX(serverOrder), 0) FROM operations WHERE libraryId = ?1)""",
            (library_id, key_for(reader)),
        ).fetchone()
        operations, baselines, last = row
        return OperationsJSON(RawJSON(operations), int(last)), RawJSON(baselines)

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

    def baselines_json_after(
        self,
        library_id: str,
        timestamp: str | None,
        reader: str,
        *,
        received_server_order: int = 0,
    ) -> RawJSON:
        """Baselines newer than ``timestamp`` that the user ``reader`` may read, as the JSON
        array a sync answer holds: ``{oid, snapshot, timestamp, authz?}`` in time order, built
        by sqlite (see ``OperationsJSON``).

        Without a ``timestamp``, every baseline that folds an operation above
        ``received_server_order`` (or whose folded operations are not known): a replica that
        was sent every operation up to that order can fold the rest itself.
        """
        if timestamp:
            newer = "AND timestamp > ?"
            parameters: tuple[object, ...] = (library_id, timestamp)
        else:
            newer = "AND (foldedServerOrder IS NULL OR foldedServerOrder > ?)"
            parameters = (library_id, received_server_order)
        row = self._db.execute(
            f"""SELECT json_group_array({_baseline_json("json(snapshot)")})
                FROM (SELECT oid, snapshot, timestamp, authz FROM baselines
                      WHERE libraryId = ? {newer} AND {_READABLE}
                      ORDER BY timestamp, oid)""",
            (*parameters, key_for(reader)),
        ).fetchone()
        return RawJSON(row[0])

    def get_baseline(self, library_id: str, oid: str) -> BaselineRow | None:
        row = self._db.execute(
            """SELECT oid, snapshot, timestamp, authz, foldedServerOrder FROM baselines
               WHERE libraryId = ? AND oid = ?""",
            (library_id, oid),
        ).fetchone()
        if row is None:
            return None
        return BaselineRow._make(row)

    def replace_baseline(
        self,
        library_id: str,
        oid: str,
        snapshot: Any,
        timestamp: str,
        authz: str | None = None,
        folded_server_order: int | None = None,
    ) -> None:
        self._db.execute(
            """INSERT OR REPLACE INTO baselines
                   (libraryId, oid, snapshot, timestamp, authz, foldedServerOrder)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (library_id, oid, json_codec.dumps(snapshot), timestamp, authz, folded_server_order),
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

    def begin_upload(self, info: FileInfo, now_ms: int) -> None:
        """Record an upload before its bytes are stored (schema migration 6)."""
        self._db.execute(
            """INSERT INTO file_uploads (uploadId, libraryId, fileId, name, startedAt)
               VALUES (?, ?, ?, ?, ?)""",
            (info.upload_id, info.library_id, info.file_id, info.name, now_ms),
        )

    def end_upload(self, upload_id: str) -> None:
        self._db.execute("DELETE FROM file_uploads WHERE uploadId = ?", (upload_id,))

    def abandoned_uploads(self, started_before_ms: int, limit: int) -> list[FileInfo]:
        """Uploads begun before ``started_before_ms`` that never got their metadata."""
        rows = self._db.execute(
            """SELECT libraryId, fileId, uploadId, name FROM file_uploads
               WHERE startedAt <= ? ORDER BY startedAt LIMIT ?""",
            (started_before_ms, limit),
        ).fetchall()
        return [FileInfo(row[0], row[1], row[2], row[3], "") for row in rows]

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

    # administration: the CLI's listing, export and import

    def library_exists(self, library_id: str) -> bool:
        row = self._db.execute(
            """SELECT EXISTS (SELECT 1 FROM libraries WHERE id = ?)
                   OR EXISTS (SELECT 1 FROM replicas WHERE libraryId = ?)""",
            (library_id, library_id),
        ).fetchone()
        return bool(row[0])

    def library_summaries(self) -> list[dict[str, Any]]:
        """Per library: history size in rows and bytes, replicas, and the latest activity."""
        rows = self._db.execute(
            """SELECT l.id,
                   (SELECT COUNT(*) FROM operations o WHERE o.libraryId = l.id),
                   (SELECT COUNT(*) FROM baselines b WHERE b.libraryId = l.id),
                   (SELECT COALESCE(SUM(LENGTH(o.data)), 0)
                      FROM operations o WHERE o.libraryId = l.id)
                   + (SELECT COALESCE(SUM(LENGTH(b.snapshot)), 0)
                      FROM baselines b WHERE b.libraryId = l.id),
                   (SELECT COUNT(*) FROM replicas r WHERE r.libraryId = l.id),
                   (SELECT MAX(r.lastSeen) FROM replicas r WHERE r.libraryId = l.id)
               FROM libraries l ORDER BY l.id"""
        ).fetchall()
        return [
            {
                "id": row[0],
                "operations": row[1],
                "baselines": row[2],
                "bytes": row[3],
                "replicas": row[4],
                "lastSeen": row[5],
            }
            for row in rows
        ]

    def library_rows(self, library_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row of the library, table by table, without the library id column."""
        tables: dict[str, list[dict[str, Any]]] = {}
        for table, key, order in _LIBRARY_TABLES:
            cursor = self._db.execute(
                f"SELECT * FROM {table} WHERE {key} = ? ORDER BY {order}", (library_id,)
            )
            columns = [description[0] for description in cursor.description]
            tables[table] = [
                {column: value for column, value in zip(columns, row, strict=True) if column != key}
                for row in cursor.fetchall()
            ]
        return tables

    def insert_library_rows(self, library_id: str, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Write rows as ``library_rows`` returns them; unknown tables or columns are refused."""
        known_tables = {table: key for table, key, _ in _LIBRARY_TABLES}
        for table, rows in tables.items():
            if table not in known_tables:
                raise ValueError(f"Unknown table {table!r}")
            key = known_tables[table]
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for row in rows:
                unknown = set(row) - (columns - {key})
                if unknown:
                    raise ValueError(f"Unknown columns of {table}: {sorted(unknown)}")
                names = [key, *row]
                verb = "INSERT OR IGNORE" if table in _KEPT_ON_IMPORT else "INSERT"
                self._db.execute(
                    f"{verb} INTO {table} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' for _ in names)})",
                    (library_id, *row.values()),
                )


# The tables that hold a library, the column naming it, and a stable order for export.
_LIBRARY_TABLES = (
    ("libraries", "id", "id"),
    ("replicas", "libraryId", "id"),
    ("operations", "libraryId", "serverOrder"),
    ("baselines", "libraryId", "oid"),
    ("quarantine", "libraryId", "oid"),
    ("files", "libraryId", "fileId"),
    ("replica_owners", "libraryId", "replicaId"),
    ("fileAccess", "libraryId", "fileId"),
)
# Rows that outlive eviction: an import keeps a binding already there (it is permanent).
_KEPT_ON_IMPORT = {"replica_owners"}


_FILE_COLUMNS = "libraryId, fileId, uploadId, name, type, size, uploadedAt, pendingDeleteAt"


# How long sqlite itself may block the thread waiting for a lock, in ms (see ``_connect``).
_C_BUSY_MS = 20

# Primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13


def _unavailable(error: sqlite3.OperationalError) -> VerdantError | None:
    """A storage failure a client should retry later (503, close 1013), not a server bug."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    if code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return VerdantError(ErrorCode.UNAVAILABLE, "The database is busy; try again later")
    if code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
        return VerdantError(
            ErrorCode.UNAVAILABLE, "The server's storage is full or failing; try again later"
        )
    return None


def _document_of(column: str) -> str:
    """SQL for the document (root) oid of the oid in ``column``: the text before its first
    ``.`` or ``:`` (``oids.get_oid_root``)."""
    dot, colon = f"instr({column}, '.')", f"instr({column}, ':')"
    first = (
        f"CASE WHEN {dot} = 0 THEN {colon} WHEN {colon} = 0 THEN {dot} ELSE min({dot}, {colon}) END"
    )
    return f"CASE WHEN ({first}) = 0 THEN {column} ELSE substr({column}, 1, ({first}) - 1) END"


# Who may read a row: everyone, or the one user whose canonical key (the parameter) it holds.
_READABLE = "(authz IS NULL OR authz = ?)"
_READABLE_2 = _READABLE.replace("?", "?2")  # the same, with the key as parameter 2
# A row of ``operations`` as an element of a sync answer's array: ``{oid, timestamp, data,
# authz?}``, built by sqlite (see ``OperationsJSON``).
_OPERATION_JSON = """CASE WHEN authz IS NULL
    THEN json_object('oid', oid, 'timestamp', timestamp, 'data', json(data))
    ELSE json_object('oid', oid, 'timestamp', timestamp, 'data', json(data), 'authz', authz) END"""


def _baseline_json(snapshot: str) -> str:
    """SQL for a baseline as an element of a sync answer's array, ``{oid, snapshot, timestamp,
    authz?}``, its snapshot the JSON expression ``snapshot`` of the row."""
    return f"""CASE WHEN authz IS NULL
    THEN json_object('oid', oid, 'snapshot', {snapshot}, 'timestamp', timestamp)
    ELSE json_object('oid', oid, 'snapshot', {snapshot}, 'timestamp', timestamp, 'authz', authz)
    END"""


# Stored operation data that is an ``initialize`` of an object or array. Written by
# ``json_codec.dumps`` from the client's ``{op, value}``; data in another key order is simply
# not recognized, and stays an operation.
_INITIALIZE_OF_OBJECT = """substr(data, 1, 28) IN ('{"op":"initialize","value":{',
                                             '{"op":"initialize","value":[')"""

# The operation model of the replica that wrote operation ``o``: a replica the server no longer
# knows (evicted) is assumed to be a store 3.x client, the model that never drops a file ref
# the other line would keep.
_AUTHOR_MODEL = """COALESCE((SELECT r.patchModel FROM replicas AS r
                            WHERE r.libraryId = o.libraryId AND r.id = o.replicaId),
                           'common2')"""
# A JSON array of [oid, timestamp] pairs (the one parameter) as rows ``k(i, oid, timestamp)``.
_KEYS = """WITH k(i, oid, timestamp) AS (
               SELECT key, json_extract(value, '$[0]'), json_extract(value, '$[1]')
               FROM json_each(?))"""
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
