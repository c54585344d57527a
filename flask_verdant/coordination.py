"""What the processes sharing one database tell each other through it.

- **Administrative events.** Evicting a library or a user, or changing a profile, must reach the
  connections and caches of every process serving the database, including when it is done from
  another process (``flask verdant evict`` in a shell). The acting process records an event in
  the ``events`` table in the same transaction as the change and applies it itself; every
  serving process reads new events about twice a second (or at once when a broker announces
  them) and applies those of others.
- **Serving processes.** Each serving process beats in the ``workers`` table. Several processes
  serving one database without a shared broker would split live sync silently (each would see
  only its own sockets), so once that has lasted past a short grace (a restarting worker
  overlaps its successor for a moment) every one of them refuses sync with the fix in the
  message, and says so in the log at CRITICAL level.

No Flask and no sockets here: the server supplies what applying an event means.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ErrorCode, VerdantError
from .storage import Database

logger = logging.getLogger("flask_verdant")

EVICT_LIBRARY = "evict-library"
EVICT_USER = "evict-user"
PROFILE_CHANGED = "profile-changed"


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    library_id: str
    user_id: str | None
    origin: str


class Coordinator:
    def __init__(
        self,
        database: Database,
        identity: Callable[[], str],
        broker_description: str,
        apply: Callable[[Event], None],
        *,
        beat_seconds: float = 1.0,
        split_grace_seconds: float = 4.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._identity = identity
        self._broker = broker_description
        self._apply = apply
        self._beat_seconds = beat_seconds
        self._split_grace = split_grace_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._pid = -1
        self._seen = 0
        self._last_beat = 0.0
        self._split_since: float | None = None
        self._refusal: VerdantError | None = None

    # events

    def record(self, kind: str, library_id: str, user_id: str | None = None) -> None:
        """Record an event for the other processes; the caller applies it here itself.

        Called inside the write transaction that makes the change, so both commit together.
        """
        with self._database.write() as tx:
            tx.record_event(kind, library_id, user_id, self._identity(), _ms(self._clock()))

    def poll_events(self) -> None:
        """Apply the events other processes recorded since the last poll, in order."""
        self.start()
        with self._lock:
            with self._database.read() as tx:
                events = [Event(*row) for row in tx.events_after(self._seen)]
            if events:
                self._seen = events[-1].seq
        me = self._identity()
        for event in events:
            if event.origin != me:
                try:
                    self._apply(event)
                except Exception:
                    logger.exception(
                        "Applying %s for library %s failed", event.kind, event.library_id
                    )

    def start(self) -> None:
        """Begin in this process (cheap when begun): events recorded from now on apply here."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                with self._database.read() as tx:
                    self._seen = tx.last_event()
                self._split_since = None
                self._refusal = None
                self._pid = os.getpid()

    # serving processes

    def step(self) -> bool:
        """One round of the background loop: beat, check for a split, apply events."""
        self.start()
        now = self._clock()
        if now - self._last_beat >= self._beat_seconds:
            self._last_beat = now
            self._beat(now)
        self.poll_events()
        return True

    def _beat(self, now: float) -> None:
        me = self._identity()
        host = socket.gethostname()
        # Bookkeeping nobody is told about: a power loss may undo it (no fsync to wait for).
        with self._database.write(durable=False) as tx:
            tx.beat_worker(me, host, os.getpid(), self._broker, _ms(now))
            tx.remove_worker("", _ms(now - 10 * self._beat_seconds))
            others = tx.other_workers(me, _ms(now - 3 * self._beat_seconds))
            gone = [row[0] for row in others if row[1] == host and not _alive(row[2])]
            for worker_id in gone:
                tx.remove_worker(worker_id)
        conflicting = [
            row
            for row in others
            if row[0] not in gone and (not self._broker or row[3] != self._broker)
        ]
        self._judge(conflicting, now)

    def _judge(self, conflicting: list[tuple[str, str, int, str, int]], now: float) -> None:
        if not conflicting:
            if self._refusal is not None:
                logger.warning(
                    "Only one process serves %s again; sync resumes", self._database.path
                )
            self._split_since = None
            self._refusal = None
            return
        if self._split_since is None:
            self._split_since = now
        if self._refusal is None and now - self._split_since >= self._split_grace:
            others = ", ".join(f"pid {row[2]} on {row[1]}" for row in conflicting)
            message = (
                f"Several processes serve the database {self._database.path} ({others}) without "
                "a shared message queue, so live sync would be split between them. Set "
                "VERDANT_MESSAGE_QUEUE = 'redis://host:port/0' for every worker, or run one "
                "worker (gunicorn -w 1)."
            )
            logger.critical(message)
            self._refusal = VerdantError(ErrorCode.UNAVAILABLE, message)

    def refusal(self) -> VerdantError | None:
        """The error every sync request gets while the database is served split, else None."""
        return self._refusal if self._pid == os.getpid() else None

    def leave(self) -> None:
        """This process stops serving: drop its row so a successor starts without waiting."""
        if self._pid != os.getpid():
            return
        try:
            with self._database.write(durable=False) as tx:
                tx.remove_worker(self._identity())
        except Exception:
            logger.debug("Could not remove this worker's row", exc_info=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
