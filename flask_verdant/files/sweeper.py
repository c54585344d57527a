"""The background loop that runs the file sweep periodically.

It starts lazily, on the first request a process serves, never at import or app creation:
gunicorn (and ``--preload``) create the app before forking, and a thread started then would
not exist in the workers. Under gevent's monkey-patching the thread is a greenlet, and the
wait between sweeps yields to the worker's other greenlets.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger("flask_verdant")


class Sweeper:
    def __init__(self, sweep: Callable[[], object], interval_seconds: float) -> None:
        """``sweep`` must be a bound method (it is held weakly)."""
        # weak, so an app dropped without ``close()`` (tests) is not kept alive by its thread
        self._sweep = weakref.WeakMethod(sweep)
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._pid == os.getpid()

    def ensure_started(self) -> None:
        """Start the loop in this process unless it runs already; cheap enough per request."""
        if self._interval <= 0 or self.running:
            return
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(self._stop,), name="verdant-file-sweep", daemon=True
            )
            thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            self._pid = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            sweep = self._sweep()
            if sweep is None:
                return
            try:
                sweep()
            except Exception:
                logger.exception("The file sweep failed; retrying in %ss", self._interval)
            del sweep
