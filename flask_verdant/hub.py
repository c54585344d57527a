"""This process's connections, by library, and local delivery to them.

The hub only knows the connections it holds; everything that must reach connections in other
processes goes through the broker (``broker``), which calls back into ``deliver`` and
``close_library`` / ``close_user`` in every process. ``send`` on a connection must never block: a
websocket connection queues (and is cut off when its budget overflows), an HTTP request collects.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from .presence import presence_kind

logger = logging.getLogger("flask_verdant")


class Connection(Protocol):
    def send(self, payload: str) -> None: ...

    def close(self) -> None:
        """End the connection early (eviction); its client reconnects and resyncs."""


@dataclass(eq=False)
class Member:
    """One connection registered in a library.

    ``id`` is unique across every process of a deployment (it starts with the worker's id), so
    a broadcast can name the connection it must skip, and presence can name the connection a
    replica is held by. ``lasting`` marks a websocket: its replicas stay present while it is
    open; an HTTP request's do not.
    """

    id: str
    library_id: str
    user_id: str
    connection: Connection
    lasting: bool
    replica_ids: set[str] = field(default_factory=set)
    # The last server order this connection's client holds: set by its sync, raised by each
    # op-re delivered to it; None until it synced.
    seen: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _held: list[str] | None = field(default=None, repr=False)
    # After its sync-resp, departures wait for ``settle`` (``SyncServer._reconcile_presence``):
    # None, or the peers (user id -> replica id) it was told of meanwhile.
    _settling: dict[str, str] | None = field(default=None, repr=False)
    # Which sync-resp the pending ``settle`` belongs to: only the latest one's settles.
    _settle_generation: int = field(default=0, repr=False)
    # Replicas ``settle`` reported gone: their own presence-offline, still in flight, is dropped.
    _announced_gone: set[str] = field(default_factory=set, repr=False)

    def saw(self, server_order: int) -> None:
        self.seen = server_order if self.seen is None else max(self.seen, server_order)

    def send(self, payload: str) -> None:
        """A broadcast: held back while the connection awaits the answer to its own message."""
        with self._lock:
            if not self._passes(payload):
                return
            if self._held is not None:
                self._held.append(payload)
                return
        _send(self.connection, payload)

    def _passes(self, payload: str) -> bool:
        """Whether a broadcast goes out now (under ``_lock``): see ``start_settling``."""
        if self._settling is None and not self._announced_gone:
            return True
        kind, replica_id, user_id = presence_kind(payload)
        if kind == "presence-changed":
            self._announced_gone.discard(replica_id)
            if self._settling is not None:
                self._settling[user_id] = replica_id
        elif kind == "presence-offline":
            if self._settling is not None:
                return False
            if replica_id in self._announced_gone:
                self._announced_gone.discard(replica_id)
                return False
        return True

    def start_settling(self) -> int:
        """Its client got a sync-resp: departures wait for ``settle``.

        A store client applies the ``peerPresence`` of a ``sync-resp`` (which replaces every
        peer it knew) only after storing its operations, so presence that arrives meanwhile is
        applied first and then lost. ``settle`` sends what changed since, and each departure
        must reach the client once: meanwhile they are held back. Returns the generation to
        pass to ``settle``.
        """
        with self._lock:
            self._settling = {} if self._settling is None else self._settling
            self._settle_generation += 1
            return self._settle_generation

    def settle(
        self, generation: int, difference: Callable[[dict[str, str]], list[tuple[str, str]]]
    ) -> None:
        """Send ``difference(told)``, ``(payload, replica id)`` pairs, and let departures
        through again; ``told``: the peers announced to it since its sync-resp. Computed under
        this connection's lock, so no broadcast passes between. Only the settle of its latest
        sync-resp does anything (the client replaced its peers with that one's)."""
        with self._lock:
            if generation != self._settle_generation:
                return
            told, self._settling = self._settling or {}, None
            for payload, replica_id in difference(told):
                if presence_kind(payload)[0] == "presence-offline":
                    self._announced_gone.add(replica_id)
                _send(self.connection, payload)

    @contextmanager
    def answering(self) -> Iterator[Callable[[str], None]]:
        """While the server answers this connection's message, broadcasts to it wait.

        The answer is read inside the message's transaction but sent once that is on disk;
        a broadcast published meanwhile is newer than the answer, and a client takes a
        ``sync-resp`` as the whole truth (its ``peerPresence`` replaces what it knew), so the
        broadcast must arrive after it. Yields the function that sends the answers.

        Only a lasting connection waits: an HTTP answer is followed by the next poll's, and a
        held long-poll must wake at once for what arrives.
        """
        answer = functools.partial(_send, self.connection)
        if not self.lasting:
            yield answer
            return
        with self._lock:
            self._held = []
        try:
            yield answer
        finally:
            with self._lock:
                held, self._held = self._held or [], None
                held = [payload for payload in held if self._passes(payload)]
            for payload in held:
                answer(payload)


class Hub:
    def __init__(self, worker_id: Callable[[], str]) -> None:
        """``worker_id`` names this process (``broker.ProcessIdentity``), forked or not."""
        self._worker_id = worker_id
        self._lock = threading.Lock()
        self._libraries: dict[str, dict[str, Member]] = {}
        self._numbers = itertools.count(1)

    def register(
        self, library_id: str, user_id: str, connection: Connection, *, lasting: bool
    ) -> Member:
        member = Member(
            f"{self._worker_id()}:{next(self._numbers)}", library_id, user_id, connection, lasting
        )
        with self._lock:
            self._libraries.setdefault(library_id, {})[member.id] = member
        return member

    def unregister(self, member: Member) -> None:
        with self._lock:
            members = self._libraries.get(member.library_id)
            if members is None:
                return
            members.pop(member.id, None)
            if not members:
                del self._libraries[member.library_id]

    def members(self, library_id: str) -> list[Member]:
        with self._lock:
            return list(self._libraries.get(library_id, {}).values())

    def libraries(self) -> list[str]:
        with self._lock:
            return list(self._libraries)

    def deliver(
        self,
        library_id: str,
        payload: str,
        exclude: str | None = None,
        orders: tuple[int, int] | None = None,
        audience: str | None = None,
    ) -> None:
        """Hand a broadcast to this process's connections of the library, but ``exclude``.

        An ``op-re`` (``orders``: its first and last server order) that does not follow what a
        synced websocket's client holds means the client missed one (the message queue was
        away): it is not delivered and the connection is closed, so the client catches up
        through ``sync`` instead of acknowledging past what it never got. A broadcast with an
        ``audience`` (a user id: a private document) reaches only that user's connections, but
        counts as seen by all: the others' ``sync`` would not show it either.
        """
        missed: list[Member] = []
        for member in self.members(library_id):
            if orders is not None and member.seen is not None:
                if orders[0] > member.seen + 1:
                    missed.append(member)
                    continue
                member.saw(orders[1])  # the sender holds its own operations too
            if member.id != exclude and audience in (None, member.user_id):
                member.send(payload)
        for member in missed:
            self.unregister(member)
            member.connection.close()

    def close_library(self, library_id: str) -> int:
        """Close and forget this process's connections of a library; returns how many."""
        with self._lock:
            members = list(self._libraries.pop(library_id, {}).values())
        for member in members:
            member.connection.close()
        return len(members)

    def close_user(self, library_id: str, user_id: str) -> int:
        """Close this process's connections of one user in a library; returns how many."""
        closing = [m for m in self.members(library_id) if m.user_id == user_id]
        for member in closing:
            self.unregister(member)
            member.connection.close()
        return len(closing)

    def close_all(self) -> int:
        """Close and forget every connection (the process is going away); returns how many."""
        with self._lock:
            libraries, self._libraries = self._libraries, {}
        members = [member for found in libraries.values() for member in found.values()]
        for member in members:
            member.connection.close()
        return len(members)

    def close_lasting(self) -> int:
        """Close this process's websockets (their clients reconnect and resync)."""
        closing = [m for library in self.libraries() for m in self.members(library) if m.lasting]
        for member in closing:
            self.unregister(member)
            member.connection.close()
        return len(closing)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(members) for members in self._libraries.values())


def _send(connection: Connection, payload: str) -> None:
    """One recipient's failure closes that recipient (it reconnects); the others still get it."""
    try:
        connection.send(payload)
    except Exception:
        logger.exception("Delivery to a connection failed; closing it")
        connection.close()
