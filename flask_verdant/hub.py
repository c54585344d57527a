"""This process's connections, by library, and local delivery to them.

The hub only knows the connections it holds; everything that must reach connections in other
processes goes through the broker (``broker``), which calls back into ``deliver`` and
``close_library`` / ``close_user`` in every process. ``send`` on a connection must never block: a
websocket connection queues (and is cut off when its budget overflows), an HTTP request collects.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


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

    def send(self, payload: str) -> None:
        self.connection.send(payload)


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

    def deliver(self, library_id: str, payload: str, exclude: str | None = None) -> None:
        """Hand a broadcast to this process's connections of the library, but ``exclude``."""
        for member in self.members(library_id):
            if member.id != exclude:
                member.send(payload)

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
