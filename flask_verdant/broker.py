"""The seam for everything that crosses processes: broadcasts, presence, compaction claims.

Each process keeps its own connections in a ``Hub``; a broker carries a library's broadcasts to
the hubs of every process serving it, in the order they were published, and holds the presence
every process sees. ``LocalBroker`` is the default for one worker: publishing is delivering.
``redis_broker.RedisBroker`` (``VERDANT_MESSAGE_QUEUE``) serves several workers and hosts.

Ordering across processes: the server publishes a message's broadcasts inside its write
transaction, so sqlite's write lock orders publications the way it orders commits, and every
process receives them in that order. Administrative events (eviction, profile changes) go
through the database (``coordination``), so a process without a broker, such as the CLI, reaches
the running workers too; a broker only makes them notice sooner.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from typing import Protocol

from .presence import PresenceRegistry, PresenceStore

Orders = tuple[int, int]
# library id, JSON text, id of the connection to skip (the sender) or None, the server orders of
# an op-re, and the one user it is for or None (see ``hub.Hub.deliver``)
Deliver = Callable[[str, str, "str | None", "Orders | None", "str | None"], None]
# a library whose connections in this process may have missed broadcasts, or None for all
Resync = Callable[["str | None"], None]


class Broker(Protocol):
    presence: PresenceStore

    @property
    def spans_processes(self) -> bool:
        """Whether broadcasts reach other processes (several workers may share a database)."""

    @property
    def description(self) -> str:
        """How workers register themselves (``workers`` table): equal for brokers that agree."""

    def start(self, deliver: Deliver, events_pending: Callable[[], None], resync: Resync) -> None:
        """Begin receiving in this process; idempotent, and again in a forked child.

        ``events_pending``: another process recorded events; ``resync``: broadcasts may have
        been missed (an outage), so this process's clients must catch up through ``sync``.
        """

    def publish(
        self,
        library_id: str,
        payload: str,
        exclude: str | None,
        orders: Orders | None = None,
        audience: str | None = None,
    ) -> None:
        """Deliver a broadcast to every connection of the library, in every process.

        ``orders``: the first and last server order an ``op-re`` carries; ``audience``: the
        one user whose connections may have it (a private document), or None for all."""

    def announce_events(self) -> None:
        """Tell the other processes that the database holds new administrative events."""

    def claim_compaction(self, library_id: str, seconds: float) -> bool:
        """Whether this process should run the library's next compaction pass."""

    def ready(self) -> bool:
        """Whether the broker can carry messages now (readiness checks)."""

    def close(self) -> None: ...


class LocalBroker:
    """One process is the whole server: publishing is delivering to this process's hub."""

    spans_processes = False
    description = ""

    def __init__(self, presence_keepalive_seconds: float) -> None:
        self.presence: PresenceStore = PresenceRegistry(presence_keepalive_seconds)
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver, events_pending: Callable[[], None], resync: Resync) -> None:
        self._deliver = deliver

    def publish(
        self,
        library_id: str,
        payload: str,
        exclude: str | None,
        orders: Orders | None = None,
        audience: str | None = None,
    ) -> None:
        if self._deliver is not None:
            self._deliver(library_id, payload, exclude, orders, audience)

    def announce_events(self) -> None:
        """Nothing to wake: other processes poll the events table."""

    def claim_compaction(self, library_id: str, seconds: float) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self._deliver = None


class ProcessIdentity:
    """This process's worker id, made anew in a forked child (gunicorn ``--preload``).

    It prefixes connection ids, so it must differ between workers that share a broker.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._id = ""

    @property
    def pid(self) -> int:
        return os.getpid()

    def __call__(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._id = f"{socket.gethostname()}/{pid}/{secrets.token_hex(3)}"
        return self._id
