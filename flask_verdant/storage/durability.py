"""Group commit: one fsync of the WAL file makes every commit that finished before it durable.

The database commits with ``synchronous = NORMAL``: in WAL mode sqlite then writes a commit's
frames to the WAL file without syncing it, so the commit survives a crash of the process but
may roll back after a power loss or an OS crash (sqlite's documentation of PRAGMA synchronous).
``FULL`` would sync the WAL inside every commit, while the writer holds the write lock and, under
gevent, the whole worker. Here the sync happens after the commit, outside any transaction:

- each commit takes a ticket (a counter raised right after ``COMMIT`` returned);
- a caller that must acknowledge waits for its ticket; the first waiter runs one ``fsync`` of
  the WAL file for every commit numbered up to the counter at that moment, in a real OS thread
  (gevent's threadpool under gevent, the waiting thread itself otherwise), and the waiters that
  arrive meanwhile share the next one. A checkpoint needs no help: with ``NORMAL`` sqlite syncs
  the WAL before copying it and the database file after.

A WAL file sqlite has just created is a new directory entry, so the first sync of each new WAL
file also syncs its directory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..offload import offload

Fsync = Callable[[int], None]


class GroupCommit:
    def __init__(self, database_path: str, fsync: Fsync = os.fsync) -> None:
        self._wal_path = database_path + "-wal"
        self._directory = os.path.dirname(os.path.abspath(database_path))
        #: The sync call, replaceable by tests that need to hold a sync in flight.
        self.fsync = fsync
        self._lock = threading.Lock()
        self._committed = 0
        self._durable = 0
        self._flushing = False
        self._flushed = threading.Event()
        self._wal_identity: tuple[int, int] | None = None
        self._failure: OSError | None = None
        self.syncs = 0  # how many syncs ran: group commit shares them between commits

    @property
    def commits(self) -> int:
        """How many commits were recorded so far."""
        return self._committed

    def committed(self) -> int:
        """Record a commit that just returned; its ticket."""
        with self._lock:
            self._committed += 1
            return self._committed

    def wait(self, ticket: int) -> None:
        """Return once the commit with ``ticket`` is on disk; ``OSError`` if a sync failed."""
        while True:
            with self._lock:
                if self._failure is not None:
                    # After a failed fsync the kernel may have dropped the unwritten pages, so
                    # a later fsync that succeeds proves nothing: refuse every acknowledgement
                    # until the process restarts and sqlite recovers from what is on disk.
                    raise OSError("an earlier fsync of the WAL failed") from self._failure
                if self._durable >= ticket:
                    return
                leading = not self._flushing
                if leading:
                    self._flushing = True
                    target = self._committed
                flushed = self._flushed
            if not leading:
                flushed.wait()
                continue
            synced, failure = False, None
            try:
                offload(self._sync_wal)
                synced = True
            except OSError as error:
                failure = error
            finally:
                # Also when the leader is interrupted (its greenlet killed): the next one leads.
                with self._lock:
                    if synced:
                        self._durable = max(self._durable, target)
                    self._failure = self._failure or failure
                    self._flushing = False
                    self._flushed = threading.Event()
                flushed.set()

    def _sync_wal(self) -> None:
        try:
            fd = os.open(self._wal_path, os.O_RDONLY)
        except FileNotFoundError:
            # No WAL: the last connection checkpointed it into the database file, synced.
            return
        try:
            stat = os.fstat(fd)
            self.fsync(fd)
            self.syncs += 1
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._wal_identity:
                directory = os.open(self._directory, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                self._wal_identity = identity
        finally:
            os.close(fd)
