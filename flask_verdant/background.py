"""A periodic background loop, started lazily and safe across ``fork()``.

Presence expiry and the file sweep both need a step that runs every few seconds. The loop starts
on first use, never at import or app creation: gunicorn (and ``--preload``) build the app before
forking, and a thread started then would not exist in the workers. Under gevent's
monkey-patching the thread is a greenlet, and its wait yields to the worker's other greenlets.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger("flask_verdant")


class BackgroundLoop:
    def __init__(self, step: Callable[[], bool], interval: float, name: str) -> None:
        """``step`` is a bound method (held weakly, so an app dropped without ``close()`` is not
        kept alive by its thread); it returns False when there is nothing left to watch, and the
        loop then ends until the next ``wake()``. A non-positive ``interval`` never starts."""
        self._step = weakref.WeakMethod(step)
        self.interval = interval
        self.name = name
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._running_in: int | None = None
        self._woken = False

    @property
    def running(self) -> bool:
        return self._running_in == os.getpid()

    def wake(self) -> None:
        """Make sure the loop runs in this process; cheap enough to call on every request."""
        if self.interval <= 0:
            return
        with self._lock:
            self._woken = True
            if self.running or self._stopped.is_set():
                return
            self._running_in = os.getpid()
        threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            step = self._step()
            if step is None:
                return
            try:
                keep_going = step()
            except Exception:
                logger.exception("%s failed; retrying in %ss", self.name, self.interval)
                keep_going = True
            del step
            with self._lock:
                if not keep_going and not self._woken:
                    self._running_in = None
                    return
                self._woken = False
        with self._lock:
            self._running_in = None
