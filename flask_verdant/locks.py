"""One lock per library, created on demand and dropped when nobody holds or waits for it.

``threading.Lock`` becomes a cooperative lock under gevent's monkey-patching, so greenlets
queue on it instead of blocking the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LibraryLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, library_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(library_id, (threading.Lock(), 0))
            self._locks[library_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[library_id]
                if users == 1:
                    del self._locks[library_id]
                else:
                    self._locks[library_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
