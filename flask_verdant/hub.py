"""Which connections belong to which library, and delivery of replies and broadcasts.

A broadcast is serialized once and the same text is handed to every recipient. ``send`` on a
connection must never block: a websocket connection queues (and is closed when its bounded
queue overflows), an HTTP request collects. This interface is the seam for a multi-worker
fan-out later (e.g. Redis): only ``publish`` would cross processes.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from . import json_codec
from .outbox import Broadcast, Envelope


class Connection(Protocol):
    def send(self, payload: str) -> None: ...

    def close(self) -> None:
        """End the connection early (eviction); its client reconnects and resyncs."""


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._libraries: dict[str, list[Connection]] = {}
        self._users: dict[Connection, str] = {}  # whose token each connection was opened with

    def register(self, library_id: str, connection: Connection, user_id: str) -> None:
        with self._lock:
            self._libraries.setdefault(library_id, []).append(connection)
            self._users[connection] = user_id

    def unregister(self, library_id: str, connection: Connection) -> None:
        with self._lock:
            self._users.pop(connection, None)
            connections = self._libraries.get(library_id)
            if connections is None:
                return
            if connection in connections:
                connections.remove(connection)
            if not connections:
                del self._libraries[library_id]

    def connections(self, library_id: str) -> list[Connection]:
        with self._lock:
            return list(self._libraries.get(library_id, ()))

    def close_library(self, library_id: str) -> int:
        """Close and forget every connection of a library; returns how many there were."""
        with self._lock:
            connections = self._libraries.pop(library_id, [])
        for connection in connections:
            connection.close()
        return len(connections)

    def publish(
        self,
        library_id: str,
        message: dict[str, Any],
        exclude: Connection | None = None,
        audience: str | None = None,
    ) -> None:
        """Send to the library's connections (only ``audience``'s, a user id, if given)."""
        payload = json_codec.dumps(message)
        for connection in self.connections(library_id):
            if connection is exclude:
                continue
            if audience is not None and self._users.get(connection) != audience:
                continue
            connection.send(payload)

    def deliver(self, library_id: str, sender: Connection, envelopes: list[Envelope]) -> None:
        """Hand a message's outcome to its sender and its library, in emission order."""
        for envelope in envelopes:
            if isinstance(envelope, Broadcast):
                self.publish(
                    library_id,
                    envelope.message,
                    None if envelope.include_sender else sender,
                    envelope.audience,
                )
            else:
                sender.send(json_codec.dumps(envelope.message))
