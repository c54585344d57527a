"""A bounded pool of sqlite3 connections, safe for threads, gevent greenlets and fork.

The queue is the stdlib one, which gevent's monkey-patching makes cooperative, so a greenlet
waiting for a connection yields instead of blocking the worker. Connections are opened lazily
and are dropped (never closed, never reused) in a forked child, so none crosses a ``fork()``.

Taking and returning a connection must not yield when one is free: every message takes two
under its library's lock. (A ``threading.BoundedSemaphore`` did yield under gevent, twice per
release, which showed as most of the time of the ownership check in the benchmarks.)
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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

    def close(self) -> None:
        """Close every connection this process opened; later use opens new ones."""
        with self._lock:
            if self._pid == os.getpid():
                for connection in self._all:
                    connection.close()
            self._reset_for_process()
