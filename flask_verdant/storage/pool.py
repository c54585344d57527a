"""A bounded pool of sqlite3 connections, safe for threads, gevent greenlets and fork.

The queue is the stdlib one, which gevent's monkey-patching makes cooperative, so a greenlet
waiting for a connection yields instead of blocking the worker. Connections are opened lazily
and are dropped (never closed, never reused) in a forked child, so none crosses a ``fork()``.

Taking and returning a connection must not yield when one is free: every message takes two
under its library's lock. (A ``threading.BoundedSemaphore`` did yield under gevent, twice per
release, which showed as most of the time of the ownership check in the benchmarks.)
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger("flask_verdant")


class ConnectionPool:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        max_size: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self._connect = connect
        self._max_size = max_size
        self._timeout = timeout
        self._lock = threading.Lock()
        self._reset_for_process()

    def _reset_for_process(self) -> None:
        self._pid = os.getpid()
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._reset_for_process()
        idle = self._idle
        try:
            connection = idle.get_nowait()
        except queue.Empty:
            connection = self._open_or_wait()
        try:
            yield connection
        finally:
            if connection.in_transaction:
                connection.rollback()
            idle.put(connection)

    def _open_or_wait(self) -> sqlite3.Connection:
        """A new connection while fewer than ``max_size`` are open, else the next one returned."""
        with self._lock:
            opening = len(self._all) < self._max_size
            if opening:
                connection = self._connect()
                self._all.append(connection)
        if opening:
            return connection
        try:
            return self._idle.get(timeout=self._timeout)
        except queue.Empty:
            raise TimeoutError("No sqlite connection became free in time") from None

    def close(
        self,
        timeout: float = 10.0,
        last: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Close every connection this process opened, each once its transaction is over.

        Waits up to ``timeout`` seconds for connections in use; ``last`` runs on the last one
        before it closes. Later use opens new ones.
        """
        with self._lock:
            idle, opened, own = self._idle, self._all, self._pid == os.getpid()
            self._reset_for_process()
        if not own:
            return
        deadline = time.monotonic() + timeout
        for remaining in range(len(opened), 0, -1):
            try:
                connection = idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                logger.warning("Closed the database with %d connections still in use", remaining)
                return
            if remaining == 1 and last is not None:
                last(connection)
            connection.close()
