"""A bounded pool of sqlite3 connections, safe for threads, gevent greenlets and fork.

The queue is the stdlib one, which gevent's monkey-patching makes cooperative, so a greenlet
waiting for a connection yields instead of blocking the worker. Connections are opened lazily
and are dropped (never closed, never reused) in a forked child, so none crosses a ``fork()``.
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
        self._slots = threading.BoundedSemaphore(self._max_size)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._reset_for_process()
        slots = self._slots
        if not slots.acquire(timeout=self._timeout):
            raise TimeoutError("No sqlite connection became free in time")
        idle = self._idle
        try:
            try:
                connection = idle.get_nowait()
            except queue.Empty:
                connection = self._connect()
                with self._lock:
                    self._all.append(connection)
            try:
                yield connection
            finally:
                if connection.in_transaction:
                    connection.rollback()
                idle.put(connection)
        finally:
            slots.release()

    def close(self) -> None:
        """Close every connection this process opened; later use opens new ones."""
        with self._lock:
            if self._pid == os.getpid():
                for connection in self._all:
                    connection.close()
            self._reset_for_process()
