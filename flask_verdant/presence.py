"""Who is online in each library, kept in memory per (library, replica) and shown per user.

Keying by replica (not by user, as the reference does) lets a user with two devices stay online
while one of them leaves, and makes "this user's last replica went" exact, so exactly one
``presence-offline`` is produced per departure.

A replica's entry may be owned by the websocket it last spoke on. Such an entry does not expire:
the socket is the proof of life (the server pings it, and a socket that stops answering is
closed), and realtime clients only speak every 15 s. Closing the socket (or a ``disconnecting``
sent on it) removes what it owns, but not an entry the replica has since refreshed over a newer
socket or HTTP: a client reconnects at once, often before the server has handled the old
socket's last message or noticed that it died.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import json_codec


@dataclass
class _ReplicaPresence:
    user_id: str
    replica_id: str
    presence: Any
    profile: Any
    updated_at: float
    expires_at: float
    owner: str | None = None
    # store 5.x's own presence (view id, last field edited); 5.x clients read it on every peer
    internal: Any = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        return self.owner is None and self.expires_at <= now

    def user_info(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "presence": self.presence,
            "profile": self.profile,
            "replicaId": self.replica_id,
            "internal": self.internal,
        }


@dataclass(frozen=True)
class Departure:
    """A user whose last replica left a library.

    ``announced``: the store already published the ``presence-offline`` (the Redis store does,
    atomically with the removal, so it cannot overtake the replica's next arrival).
    """

    library_id: str
    replica_id: str
    user_id: str
    announced: bool = False

    def message(self) -> dict[str, Any]:
        return {"type": "presence-offline", "replicaId": self.replica_id, "userId": self.user_id}


def presence_kind(payload: str) -> tuple[str, str, str]:
    """The type, replica and user of a ``presence-changed`` or ``presence-offline`` broadcast,
    else empty strings; our JSON begins with the type, so other payloads are not parsed."""
    if not payload.startswith('{"type":"presence-'):
        return "", "", ""
    message = json_codec.loads(payload)
    user = message.get("userId") or (message.get("userInfo") or {}).get("id")
    return str(message.get("type")), str(message.get("replicaId")), str(user)


class PresenceStore(Protocol):
    """Presence as every process of a deployment sees it; ``owner`` is a connection id (hub).

    Implementations: ``PresenceRegistry`` (this process's memory, for one worker) and
    ``redis_presence.RedisPresence`` (shared by workers). Each departure is reported by exactly
    one call, in one process, so exactly one ``presence-offline`` goes out per departure.
    """

    keepalive_seconds: float

    def update(
        self,
        library_id: str,
        replica_id: str,
        user_id: str,
        changes: Mapping[str, Any],
        profile: Any,
        now: float,
    ) -> dict[str, Any]:
        """Merge the fields a client sent (``presence``, ``internal``) into its replica's entry
        and return the ``UserInfo`` to broadcast."""

    def remove(self, library_id: str, replica_id: str, owner: str | None) -> Departure | None:
        """The replica leaves now (``disconnecting`` on connection ``owner``), unless it has
        since spoken on another connection: the message of a closing socket may be handled
        after the replica's first message on its new one."""

    def refresh(self, library_id: str, replica_id: str, now: float) -> None: ...

    def claim(self, library_id: str, replica_id: str, owner: str | None, now: float) -> None: ...

    def release(self, library_id: str, owner: str) -> list[Departure]: ...

    def sweep(self, now: float) -> list[Departure]:
        """Drop unowned replicas whose keepalive ran out (and, shared, those of dead workers)."""

    def peers(self, library_id: str) -> dict[str, dict[str, Any]]: ...

    def clear(self, library_id: str) -> None: ...

    def watching(self) -> bool:
        """Whether the sweeper still has anything to do."""


class PresenceRegistry:
    """The presence of one process, in memory."""

    def __init__(self, keepalive_seconds: float = 30.0) -> None:
        self.keepalive_seconds = keepalive_seconds
        self._libraries: dict[str, dict[str, _ReplicaPresence]] = {}
        self._lock = threading.Lock()

    def update(
        self,
        library_id: str,
        replica_id: str,
        user_id: str,
        changes: Mapping[str, Any],
        profile: Any,
        now: float,
    ) -> dict[str, Any]:
        """Record a replica's presence and return the ``UserInfo`` to broadcast.

        ``changes`` holds the fields the client sent (``presence``, ``internal``); like the
        ``Object.assign`` of store 5.x's server they replace the replica's previous values and
        the fields left out keep theirs.
        """
        with self._lock:
            replicas = self._libraries.setdefault(library_id, {})
            previous = replicas.get(replica_id)
            entry = _ReplicaPresence(
                user_id,
                replica_id,
                changes.get("presence", previous.presence if previous else None),
                profile,
                now,
                now + self.keepalive_seconds,
                internal=changes.get("internal", previous.internal if previous else {}),
            )
            replicas[replica_id] = entry
        return entry.user_info()

    def refresh(self, library_id: str, replica_id: str, now: float) -> None:
        with self._lock:
            entry = self._libraries.get(library_id, {}).get(replica_id)
            if entry is not None:
                entry.expires_at = now + self.keepalive_seconds

    def claim(self, library_id: str, replica_id: str, owner: str | None, now: float) -> None:
        """Record which connection (``None``: none that lasts) the replica last spoke on."""
        with self._lock:
            entry = self._libraries.get(library_id, {}).get(replica_id)
            if entry is not None:
                entry.owner = owner
                entry.expires_at = now + self.keepalive_seconds

    def remove(self, library_id: str, replica_id: str, owner: str | None) -> Departure | None:
        with self._lock:
            entry = self._libraries.get(library_id, {}).get(replica_id)
            if entry is None or entry.owner != owner:
                return None
            return self._remove(library_id, replica_id)

    def release(self, library_id: str, owner: str) -> list[Departure]:
        """Drop the replicas a closed connection owns; report the users that left with them."""
        with self._lock:
            owned = [
                replica_id
                for replica_id, entry in self._libraries.get(library_id, {}).items()
                if entry.owner == owner
            ]
            departures = [self._remove(library_id, replica_id) for replica_id in owned]
        return [departure for departure in departures if departure is not None]

    def _remove(self, library_id: str, replica_id: str) -> Departure | None:
        replicas = self._libraries.get(library_id)
        if replicas is None or replica_id not in replicas:
            return None
        entry = replicas.pop(replica_id)
        if not replicas:
            del self._libraries[library_id]
        if any(other.user_id == entry.user_id for other in replicas.values()):
            return None
        return Departure(library_id, replica_id, entry.user_id)

    def sweep(self, now: float) -> list[Departure]:
        """Drop unowned replicas whose keepalive ran out; report who left."""
        with self._lock:
            expired = [
                (library_id, replica_id)
                for library_id, replicas in self._libraries.items()
                for replica_id, entry in replicas.items()
                if entry.expired(now)
            ]
            departures = [self._remove(library, replica) for library, replica in expired]
        return [departure for departure in departures if departure is not None]

    def peers(self, library_id: str) -> dict[str, dict[str, Any]]:
        """Each present user's most recently updated replica, as ``userId -> UserInfo``."""
        with self._lock:
            latest: dict[str, _ReplicaPresence] = {}
            for entry in self._libraries.get(library_id, {}).values():
                current = latest.get(entry.user_id)
                if current is None or entry.updated_at >= current.updated_at:
                    latest[entry.user_id] = entry
            return {user_id: entry.user_info() for user_id, entry in latest.items()}

    def clear(self, library_id: str) -> None:
        with self._lock:
            self._libraries.pop(library_id, None)

    def watching(self) -> bool:
        return bool(len(self))

    def __len__(self) -> int:
        """How many replicas are present, across libraries."""
        with self._lock:
            return sum(len(replicas) for replicas in self._libraries.values())
