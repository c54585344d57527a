"""A background thread that expires presence, so users who vanish silently are announced gone.

A websocket close removes its replicas at once, but a pull client that stops polling, or a socket
that dies without a close, only shows up as a keepalive that runs out. The thread runs only while
someone is present, is started lazily (never before a ``fork()``, so gunicorn's ``--preload`` is
safe), and is a greenlet under gevent's monkey-patching.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger("flask_verdant")


class PresenceSweeper:
    def __init__(self, sweep: Callable[[], bool], interval: float) -> None:
        """``sweep`` expires what is due and says whether anyone is still present."""
        # A weak reference, so a server dropped without ``close()`` (tests) is not kept alive.
        self._sweep = weakref.WeakMethod(sweep)
        self.interval = interval
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._running = False
        self._woken = False
        self._pid = os.getpid()

    def wake(self) -> None:
        """Make sure a sweep is coming; call after presence may have been added."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._running = os.getpid(), False
            self._woken = True
            if self._running or self._stopped.is_set():
                return
            self._running = True
        threading.Thread(target=self._run, name="verdant-presence-sweeper", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    @property
    def running(self) -> bool:
        return self._running and self._pid == os.getpid()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            sweep = self._sweep()
            if sweep is None:
                return
            try:
                present = sweep()
            except Exception:
                logger.exception("Presence sweep failed")
                present = True
            del sweep
            with self._lock:
                if not present and not self._woken:
                    self._running = False
                    return
                self._woken = False
