"""Runs a library's background work a moment after it was asked for, once per burst.

Compaction is triggered by every write, but one pass soon after a burst of writes does the same
work as one pass per write, off the request path. Timers are threads (greenlets under gevent's
monkey-patching) created on first use, so nothing is started before a server forks its workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("flask_verdant")


class LibraryScheduler:
    def __init__(self, run: Callable[[str], bool], delay_seconds: float) -> None:
        """``run(library_id)`` does one bounded pass and returns True when work remains."""
        self._run = run
        self._delay = delay_seconds
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Timer] = {}

    def schedule(self, library_id: str) -> None:
        with self._lock:
            if library_id in self._pending:
                return
            timer = threading.Timer(self._delay, self._fire, (library_id,))
            timer.daemon = True
            self._pending[library_id] = timer
        timer.start()

    def _fire(self, library_id: str) -> None:
        with self._lock:
            self._pending.pop(library_id, None)
        try:
            more = self._run(library_id)
        except Exception:
            logger.exception("Background pass for library %s failed", library_id)
            return
        if more:
            self.schedule(library_id)

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def cancel(self) -> None:
        with self._lock:
            timers = list(self._pending.values())
            self._pending.clear()
        for timer in timers:
            timer.cancel()
