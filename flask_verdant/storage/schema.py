"""Schema versions, applied forward in order and recorded in ``PRAGMA user_version``.

Each migration is a list of statements; a database at version N runs migrations N+1.. in one
transaction, so a crash mid-upgrade leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[list[str]] = [
    # 1: libraries with a persistent server-order counter and a monotonic global ack,
    #    replicas, operation history, document baselines.
    [
        """CREATE TABLE libraries (
            id TEXT NOT NULL PRIMARY KEY,
            lastServerOrder INTEGER NOT NULL DEFAULT 0,
            globalAck TEXT
        ) WITHOUT ROWID""",
        """CREATE TABLE replicas (
            libraryId TEXT NOT NULL,
            id TEXT NOT NULL,
            userId TEXT NOT NULL,
            type INTEGER NOT NULL DEFAULT 0,
            ackedLogicalTime TEXT,
            ackedServerOrder INTEGER NOT NULL DEFAULT 0,
            lastSeen INTEGER,
            PRIMARY KEY (libraryId, id)
        ) WITHOUT ROWID""",
        """CREATE TABLE operations (
            libraryId TEXT NOT NULL,
            serverOrder INTEGER NOT NULL,
            oid TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            replicaId TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (libraryId, serverOrder)
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX operations_by_identity ON operations (libraryId, oid, timestamp)",
        "CREATE INDEX operations_by_time ON operations (libraryId, timestamp)",
        """CREATE TABLE baselines (
            libraryId TEXT NOT NULL,
            oid TEXT NOT NULL,
            snapshot TEXT,
            timestamp TEXT NOT NULL,
            PRIMARY KEY (libraryId, oid)
        ) WITHOUT ROWID""",
        "CREATE INDEX baselines_by_time ON baselines (libraryId, timestamp)",
    ],
    # 2: documents whose operations cannot be applied; compaction leaves them in history.
    [
        """CREATE TABLE quarantine (
            libraryId TEXT NOT NULL,
            oid TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            error TEXT NOT NULL,
            quarantinedAt INTEGER NOT NULL,
            PRIMARY KEY (libraryId, oid)
        ) WITHOUT ROWID""",
    ],
    # 3: what the server needs to make up for the 3.x pull client dropping early edits
    #    (docs/protocol.md, "Pull clients and early edits (R1-R7)"): the previous sync's
    #    timestamp, and whether the replica was asked for its full history right after its
    #    first sync.
    [
        "ALTER TABLE replicas ADD COLUMN lastSyncTimestamp TEXT",
        "ALTER TABLE replicas ADD COLUMN awaitingHistory INTEGER NOT NULL DEFAULT 0",
    ],
    # 4: uploaded files. Each upload has its own random uploadId (part of its storage location
    #    and download URL); pendingDeleteAt is set while no document references the file.
    [
        """CREATE TABLE files (
            libraryId TEXT NOT NULL,
            fileId TEXT NOT NULL,
            uploadId TEXT NOT NULL,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            size INTEGER NOT NULL,
            uploadedAt INTEGER NOT NULL,
            pendingDeleteAt INTEGER,
            PRIMARY KEY (libraryId, fileId)
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX files_by_upload ON files (uploadId)",
        """CREATE INDEX files_pending_delete ON files (pendingDeleteAt)
           WHERE pendingDeleteAt IS NOT NULL""",
    ],
    # 5: coordination between the processes sharing this file (flask_verdant.coordination):
    #    administrative events that every serving process applies (eviction closes sockets
    #    wherever they are), and the serving processes, so several of them without a message
    #    queue are noticed.
    [
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            libraryId TEXT NOT NULL,
            userId TEXT,
            origin TEXT NOT NULL,
            createdAt INTEGER NOT NULL
        )""",
        """CREATE TABLE workers (
            id TEXT NOT NULL PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            broker TEXT NOT NULL,
            startedAt INTEGER NOT NULL,
            beatAt INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ],
    # 6: which user each replica id belongs to, from the first time the server sees it. Peers
    #    see replica ids, so eviction must not clear this, or anyone could claim an evicted id.
    [
        """CREATE TABLE replica_owners (
            libraryId TEXT NOT NULL,
            replicaId TEXT NOT NULL,
            userId TEXT NOT NULL,
            PRIMARY KEY (libraryId, replicaId)
        ) WITHOUT ROWID""",
        "INSERT INTO replica_owners SELECT libraryId, id, userId FROM replicas",
        "CREATE INDEX replica_owners_by_user ON replica_owners (libraryId, userId)",
    ],
    # 7: uploads in progress, recorded before their bytes are stored and removed with the
    #    metadata write, so bytes whose process died in between are found and deleted.
    [
        """CREATE TABLE file_uploads (
            uploadId TEXT NOT NULL PRIMARY KEY,
            libraryId TEXT NOT NULL,
            fileId TEXT NOT NULL,
            name TEXT NOT NULL,
            startedAt INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX file_uploads_by_start ON file_uploads (startedAt)",
    ],
    # 8: which operation model a replica's client folds with ('common2' for store 3.x,
    #    'common3' for store 5.x); compaction applies each operation as its author did.
    [
        "ALTER TABLE replicas ADD COLUMN patchModel TEXT NOT NULL DEFAULT 'common2'",
    ],
    # 9: store 5.x's private documents: the canonical authz key of an operation or baseline
    #    (NULL: readable by every user of the library), and of the first operation that held
    #    each file ref (a private document's files are its user's alone).
    [
        "ALTER TABLE operations ADD COLUMN authz TEXT",
        "ALTER TABLE baselines ADD COLUMN authz TEXT",
        """CREATE TABLE fileAccess (
            libraryId TEXT NOT NULL,
            fileId TEXT NOT NULL,
            authz TEXT,
            PRIMARY KEY (libraryId, fileId)
        ) WITHOUT ROWID""",
    ],
    # 10: the highest server order a baseline folded (NULL: not known, written before this
    #     version). A replica that was sent every operation up to that order needs no copy of
    #     the baseline (docs/protocol.md, "Baselines after a reset").
    [
        "ALTER TABLE baselines ADD COLUMN foldedServerOrder INTEGER",
    ],
    # 11: global acks computed but not yet published, each with when it was computed (ms):
    #     a value waits before it goes out (docs/protocol.md, "The global ack").
    [
        "ALTER TABLE libraries ADD COLUMN waitingAck TEXT",
        "ALTER TABLE libraries ADD COLUMN waitingAckSince INTEGER",
        "ALTER TABLE libraries ADD COLUMN laterAck TEXT",
        "ALTER TABLE libraries ADD COLUMN laterAckSince INTEGER",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: sqlite3.Connection, begin: Callable[[], None] | None = None) -> int:
    """Bring the database to ``SCHEMA_VERSION``; refuse one written by a newer release.

    ``begin`` opens the write transaction (the database's own, which waits for a busy lock
    cooperatively); by default a plain ``BEGIN IMMEDIATE``.
    """
    if begin is None:
        connection.execute("BEGIN IMMEDIATE")
    else:
        begin()
    try:
        current = connection.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"The database has schema version {current}; this flask-verdant knows up to "
                f"{SCHEMA_VERSION}. Upgrade flask-verdant."
            )
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return int(current)
