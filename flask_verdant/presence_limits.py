"""What a client may put into presence, checked at intake before a batch is applied.

Presence lives in memory and every peer receives it, so without limits one connection could
hold presence for any number of made-up replica ids, each as large as a message. The limits:

- a websocket speaks for one replica, the first it names (the client opens one per replica);
- one replica's presence is at most ``max_bytes`` (as JSON);
- a user has at most ``max_replicas`` replicas present in a library at once;
- a user sends at most ``per_second`` presence updates per library on average (``2 x`` as a
  burst).

This is kept apart from the presence registry on purpose: it decides what is admitted, the
registry (in process, or behind a broker) keeps what was. It follows the registry's lifetimes
from the outside: an entry lives while a socket that spoke for it is open, or for the keepalive
after its replica last spoke.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from .errors import ErrorCode, VerdantError


@dataclass(frozen=True)
class PresenceLimits:
    max_bytes: int = 16 * 1024
    max_replicas: int = 16
    per_second: float = 20.0


@dataclass
class _Entry:
    expires_at: float
    owner: object | None


class PresenceAdmission:
    def __init__(
        self, limits: PresenceLimits, keepalive_seconds: float, max_users: int = 65536
    ) -> None:
        self.limits = limits
        self._keepalive = keepalive_seconds
        self._max_users = max_users
        self._lock = threading.Lock()
        # (library, user) -> replica -> entry; each user's list is capped at max_replicas.
        self._present: dict[tuple[str, str], dict[str, _Entry]] = {}
        # (library, user) -> (tokens, last refill): least recently used first, capped.
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        # Each open websocket: the replica it speaks for, and the present entries it keeps.
        self._speaks_for: dict[object, str] = {}
        self._owned: dict[object, set[tuple[tuple[str, str], str]]] = {}
        self._next_sweep = 0.0

    def check_speaker(self, owner: object | None, replica_id: str) -> None:
        """A websocket may speak only for the replica it first named."""
        if owner is None:
            return
        with self._lock:
            own = self._speaks_for.setdefault(owner, replica_id)
        if own != replica_id:
            raise VerdantError(
                ErrorCode.FORBIDDEN, "A connection may speak only for its own replica"
            )

    def admit_update(
        self,
        library_id: str,
        user_id: str,
        replica_id: str,
        size: int,
        owner: object | None,
        now: float,
    ) -> None:
        """Admit one presence update of ``size`` bytes, or raise the error that refuses it."""
        if size > self.limits.max_bytes:
            raise VerdantError(
                ErrorCode.TOO_LARGE, f"A presence is limited to {self.limits.max_bytes} bytes"
            )
        key = (library_id, user_id)
        with self._lock:
            if not self._take_token(key, now):
                error = VerdantError(
                    ErrorCode.TOO_MANY_REQUESTS, "Too many presence updates; slow down"
                )
                error.quiet = True
                raise error
            if now >= self._next_sweep:
                self._sweep(now)
            replicas = self._present.setdefault(key, {})
            entry = replicas.get(replica_id)
            if entry is None:
                self._prune(replicas, now)
                if len(replicas) >= self.limits.max_replicas:
                    raise VerdantError(
                        ErrorCode.FORBIDDEN,
                        f"A user may have at most {self.limits.max_replicas} replicas present",
                    )
                entry = replicas[replica_id] = _Entry(now, None)
            entry.expires_at = now + self._keepalive
            self._set_owner(key, replica_id, entry, owner)

    def spoke(
        self, library_id: str, user_id: str, replica_id: str, owner: object | None, now: float
    ) -> None:
        """Any message keeps a present replica alive and ties it to the connection it came on."""
        key = (library_id, user_id)
        with self._lock:
            entry = self._present.get(key, {}).get(replica_id)
            if entry is not None:
                entry.expires_at = now + self._keepalive
                self._set_owner(key, replica_id, entry, owner)

    def release(self, owner: object) -> None:
        """A websocket closed: forget it, and the presence it alone kept alive."""
        with self._lock:
            self._speaks_for.pop(owner, None)
            for key, replica_id in self._owned.pop(owner, ()):
                replicas = self._present.get(key, {})
                replicas.pop(replica_id, None)
                if not replicas:
                    self._present.pop(key, None)

    def clear(self, library_id: str) -> None:
        with self._lock:
            for key in [key for key in self._present if key[0] == library_id]:
                for replica_id, entry in self._present.pop(key).items():
                    self._set_owner(key, replica_id, entry, None)

    def _set_owner(
        self, key: tuple[str, str], replica_id: str, entry: _Entry, owner: object | None
    ) -> None:
        if entry.owner is owner:
            return
        if entry.owner is not None:
            owned = self._owned.get(entry.owner)
            if owned is not None:
                owned.discard((key, replica_id))
                if not owned:
                    del self._owned[entry.owner]
        entry.owner = owner
        if owner is not None:
            self._owned.setdefault(owner, set()).add((key, replica_id))

    def _sweep(self, now: float) -> None:
        """Forget expired entries everywhere, at most once per keepalive period."""
        self._next_sweep = now + self._keepalive
        for key, replicas in list(self._present.items()):
            self._prune(replicas, now)
            if not replicas:
                del self._present[key]

    def _take_token(self, key: tuple[str, str], now: float) -> bool:
        burst = 2 * self.limits.per_second
        tokens, last = self._buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * self.limits.per_second)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max_users:
            self._buckets.popitem(last=False)
        return allowed

    @staticmethod
    def _prune(replicas: dict[str, _Entry], now: float) -> None:
        for replica_id, entry in list(replicas.items()):
            if entry.owner is None and entry.expires_at <= now:
                del replicas[replica_id]
