"""Short jobs on reused threads: a job runs on a parked thread if one waits, else on a new one.

A websocket needs a writer only while it has something to write: a thread (under gevent a
greenlet with its own stack) kept for each socket's whole life would cost every idle connection
some 8 KiB (BENCHMARKS.md). But starting a greenlet costs about five times what waking a parked
one does, and a busy socket needs a writer again and again. So a thread whose job is done parks
for a while, at most ``max_parked`` of them, and the next job anywhere in the process takes it.
"""

from __future__ import annotations

import _thread
import os
import threading
from collections.abc import Callable


class _Parked:
    """A parked thread's mailbox: ``run`` leaves a job and sets ``wake``."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: Callable[[], None] = _nothing
        self.wake = threading.Event()


def _nothing() -> None:
    pass


class ThreadReuse:
    def __init__(self, max_parked: int = 64, park_seconds: float = 2.0) -> None:
        self._max_parked = max_parked
        self._park_seconds = park_seconds
        self._lock = threading.Lock()
        self._parked: list[_Parked] = []
        self._pid = os.getpid()

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` on another thread; it must catch its own errors."""
        with self._lock:
            if self._pid != os.getpid():
                # Parked threads do not survive a fork.
                self._parked, self._pid = [], os.getpid()
            parked = self._parked.pop() if self._parked else None
        if parked is None:
            _thread.start_new_thread(self._serve, (job,))
        else:
            parked.job = job
            parked.wake.set()

    def _serve(self, job: Callable[[], None]) -> None:
        slot = _Parked()
        while True:
            job()
            with self._lock:
                if len(self._parked) >= self._max_parked:
                    return
                slot.wake.clear()
                self._parked.append(slot)
            if not slot.wake.wait(self._park_seconds):
                with self._lock:
                    if slot in self._parked:
                        self._parked.remove(slot)
                        return
                # ``run`` took this slot just as the wait ended; its job is on the way.
                slot.wake.wait()
            job, slot.job = slot.job, _nothing
