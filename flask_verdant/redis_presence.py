"""Presence in Redis, shared by every worker of a deployment (``VERDANT_MESSAGE_QUEUE``).

The same rules as ``presence.PresenceRegistry``, kept where every worker sees them:

- per library, three hashes keyed by replica: the entry as peers see it (JSON), its user, and
  the connection that holds it ("" for none);
- unowned entries have an expiry in one sorted set, which any worker's sweeper reaps;
- an entry held by a websocket does not expire while its worker lives: each worker beats in a
  hash, keeps a set of the entries its connections hold, and the entries of a worker that stopped
  beating (killed) are reaped by the others.

Every removal runs as one Lua script that deletes the entry and says whether it was the user's
last replica, so of all the workers racing to remove it, exactly one announces the departure.

While Redis is unreachable presence is not shared: reads answer empty and writes are dropped
(``Outage``), so syncing goes on; the broker makes clients resync when Redis is back. Every call
still tries Redis: a worker that has not noticed yet that Redis is back must not drop what
its clients send meanwhile.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis

from . import json_codec
from .presence import Departure

logger = logging.getLogger("flask_verdant")

ERRORS = (redis.RedisError, OSError)
T = TypeVar("T")


class Outage:
    """Whether Redis is known to be unreachable; the first failure is logged, once."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.down = False

    def lost(self, error: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.error(
                "Lost the message queue (%s): %s. Each worker serves its own sockets until it "
                "is back.",
                self.description,
                error,
            )


def _tolerant(default: Callable[[], T]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """If the call fails, record the outage and answer ``default()``: presence is a courtesy,
    syncing must go on."""

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(self: RedisPresence, *args: Any, **kwargs: Any) -> T:
            try:
                return method(self, *args, **kwargs)
            except ERRORS as error:
                self.outage.lost(error)
                return default()

        return wrapper

    return decorate


_REFRESHED_ENTRIES = 100_000  # replicas whose last refresh a process remembers

_USER = "\u0000user\u0000"  # stands for the user id, which only the script knows


def frame(
    library_id: str,
    payload: str,
    exclude: str | None = None,
    orders: Any = None,
    audience: str | None = None,
) -> str:
    """A broadcast as the broker's channel carries it: a JSON header line, then the payload."""
    return json_codec.dumps(["D", library_id, exclude, orders, audience]) + "\n" + payload


def _no_departure() -> Departure | None:
    return None


def _no_departures() -> list[Departure]:
    return []


def _no_peers() -> dict[str, dict[str, Any]]:
    return {}


_REMOVE = """
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then return false end
local owner = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if ARGV[3] == 'owner' then
  if owner ~= ARGV[4] then return false end
elseif ARGV[3] == 'expired' then
  if owner ~= '' then return false end
  local due = redis.call('ZSCORE', KEYS[4], ARGV[2])
  if (not due) or tonumber(due) > tonumber(ARGV[4]) then return false end
elseif ARGV[3] == 'worker' then
  if string.sub(owner, 1, string.len(ARGV[4])) ~= ARGV[4] then return false end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
for _, other in ipairs(redis.call('HVALS', KEYS[2])) do
  if other == user then return false end
end
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. cjson.encode(user) .. ARGV[7])
end
return user
"""

_CLAIM = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[3] == '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
else
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[2])
end
return 1
"""


class RedisPresence:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        keepalive_seconds: float,
        worker_id: Callable[[], str],
        dead_after_seconds: float = 5.0,
        outage: Outage | None = None,
        channel: str = "",
    ) -> None:
        """``channel``: where the broker's frames go; departures are published there, in the
        same script that removes the replica (see ``Departure.announced``)."""
        self.keepalive_seconds = keepalive_seconds
        self.outage = outage or Outage(f"redis presence {namespace}")
        self._redis = client
        self._ns = namespace
        self._worker_id = worker_id
        self._dead_after = dead_after_seconds
        self._channel = channel
        # When this process last pushed back each replica's expiry (``refresh``), bounded.
        self._refreshed: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._refreshed_lock = threading.Lock()
        self._remove = client.register_script(_REMOVE)
        self._claim = client.register_script(_CLAIM)
        self._expiry = f"{namespace}:presence:expiry"
        self._workers = f"{namespace}:presence:workers"

    def _keys(self, library_id: str) -> tuple[str, str, str]:
        base = f"{self._ns}:presence:{library_id}"
        return f"{base}:entry", f"{base}:user", f"{base}:owner"

    def _owned(self, worker: str) -> str:
        return f"{self._ns}:presence:owned:{worker}"

    def update(
        self,
        library_id: str,
        replica_id: str,
        user_id: str,
        changes: Mapping[str, Any],
        profile: Any,
        now: float,
    ) -> dict[str, Any]:
        previous: dict[str, Any] = self._entry(library_id, replica_id)
        user_info = {
            "id": user_id,
            "presence": changes.get("presence", previous.get("presence")),
            "profile": profile,
            "replicaId": replica_id,
            "internal": changes.get("internal", previous.get("internal") or {}),
        }
        self._store(library_id, replica_id, user_info, now)
        return user_info

    @_tolerant(dict)
    def _entry(self, library_id: str, replica_id: str) -> dict[str, Any]:
        """The replica's current entry, or {} (the fields an update leaves out keep these)."""
        entry, _, _ = self._keys(library_id)
        raw = self._redis.hget(entry, replica_id)
        found: dict[str, Any] = json_codec.loads(_text(raw)) if raw is not None else {}
        return found

    @_tolerant(lambda: None)
    def _store(
        self, library_id: str, replica_id: str, user_info: dict[str, Any], now: float
    ) -> None:
        entry, users, owners = self._keys(library_id)
        pipe = self._redis.pipeline()
        pipe.hset(entry, replica_id, json_codec.dumps({**user_info, "updatedAt": now}))
        pipe.hset(users, replica_id, user_info["id"])
        pipe.hset(owners, replica_id, "")
        pipe.zadd(self._expiry, {_member(library_id, replica_id): now + self.keepalive_seconds})
        pipe.execute()

    @_tolerant(_no_departure)
    def remove(self, library_id: str, replica_id: str, owner: str | None) -> Departure | None:
        departures = self._remove_all(library_id, [replica_id], "owner", owner or "")
        return departures[0] if departures else None

    def refresh(self, library_id: str, replica_id: str, now: float) -> None:
        """Push the replica's expiry back, at most once a third of the keepalive.

        Every message refreshes its replica, and a round trip to Redis per message was most of
        the cost of the message queue (BENCHMARKS.md); an entry refreshed a moment ago gains
        nothing from it. So an entry may expire up to a third of the keepalive early.
        """
        key = (library_id, replica_id)
        with self._refreshed_lock:
            last = self._refreshed.get(key)
            if last is not None and now - last < self.keepalive_seconds / 3:
                return
            self._refreshed[key] = now
            self._refreshed.move_to_end(key)
            while len(self._refreshed) > _REFRESHED_ENTRIES:
                self._refreshed.popitem(last=False)
        self._refresh(library_id, replica_id, now)

    @_tolerant(lambda: None)
    def _refresh(self, library_id: str, replica_id: str, now: float) -> None:
        self._redis.zadd(
            self._expiry, {_member(library_id, replica_id): now + self.keepalive_seconds}, xx=True
        )

    @_tolerant(lambda: None)
    def claim(self, library_id: str, replica_id: str, owner: str | None, now: float) -> None:
        _, users, owners = self._keys(library_id)
        worker = owner.rsplit(":", 1)[0] if owner else ""
        self._claim(
            keys=[users, owners, self._expiry, self._owned(worker)],
            args=[
                replica_id,
                _member(library_id, replica_id),
                owner or "",
                now + self.keepalive_seconds,
            ],
        )

    @_tolerant(_no_departures)
    def release(self, library_id: str, owner: str) -> list[Departure]:
        _, _, owners = self._keys(library_id)
        held = [
            _text(replica)
            for replica, holder in self._redis.hgetall(owners).items()
            if _text(holder) == owner
        ]
        return self._remove_all(library_id, held, "owner", owner)

    @_tolerant(_no_departures)
    def sweep(self, now: float) -> list[Departure]:
        me = self._worker_id()
        self._redis.hset(self._workers, me, now)
        departures: list[Departure] = []
        for member in self._redis.zrangebyscore(self._expiry, "-inf", now):
            library_id, replica_id = json.loads(_text(member))
            departures += self._remove_all(library_id, [replica_id], "expired", str(now))
        for worker, beat in self._redis.hgetall(self._workers).items():
            if float(beat) < now - self._dead_after:
                departures += self._reap(_text(worker))
        return departures

    def _reap(self, worker: str) -> list[Departure]:
        """Remove what a worker that stopped beating (killed) held; exactly once overall."""
        departures: list[Departure] = []
        for member in self._redis.smembers(self._owned(worker)):
            library_id, replica_id = json.loads(member)
            departures += self._remove_all(library_id, [replica_id], "worker", f"{worker}:")
        pipe = self._redis.pipeline()
        pipe.delete(self._owned(worker))
        pipe.hdel(self._workers, worker)
        pipe.execute()
        return departures

    def _remove_all(
        self, library_id: str, replica_ids: list[str], mode: str, argument: str
    ) -> list[Departure]:
        entry, users, owners = self._keys(library_id)
        departures = []
        for replica_id in replica_ids:
            before, after = self._offline_frame(library_id, replica_id)
            user = self._remove(
                keys=[entry, users, owners, self._expiry],
                args=[
                    *(replica_id, _member(library_id, replica_id), mode, argument),
                    *(self._channel, before, after),
                ],
            )
            if user:
                departures.append(
                    Departure(library_id, replica_id, _text(user), announced=bool(self._channel))
                )
        return departures

    def _offline_frame(self, library_id: str, replica_id: str) -> tuple[str, str]:
        """The bus frame of this replica's ``presence-offline``, cut where its user goes."""
        message = Departure(library_id, replica_id, _USER).message()
        before, after = frame(library_id, json_codec.dumps(message)).split(json_codec.dumps(_USER))
        return before, after

    @_tolerant(_no_peers)
    def peers(self, library_id: str) -> dict[str, dict[str, Any]]:
        entry, _, _ = self._keys(library_id)
        latest: dict[str, dict[str, Any]] = {}
        for raw in self._redis.hvals(entry):
            info = json_codec.loads(_text(raw))
            current = latest.get(info["id"])
            if current is None or info["updatedAt"] >= current["updatedAt"]:
                latest[info["id"]] = info
        return {
            user_id: {key: value for key, value in info.items() if key != "updatedAt"}
            for user_id, info in latest.items()
        }

    @_tolerant(lambda: None)
    def clear(self, library_id: str) -> None:
        entry, users, owners = self._keys(library_id)
        replicas = [_text(replica) for replica in self._redis.hkeys(users)]
        pipe = self._redis.pipeline()
        pipe.delete(entry, users, owners)
        if replicas:
            pipe.zrem(self._expiry, *(_member(library_id, r) for r in replicas))
        pipe.execute()

    def watching(self) -> bool:
        """Always: the sweeper also beats for this worker and reaps dead ones."""
        return True

    def leave(self) -> None:
        """This worker stops: let the others reap what it held at once."""
        self._redis.hset(self._workers, self._worker_id(), 0)


def _member(library_id: str, replica_id: str) -> str:
    return json.dumps([library_id, replica_id])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
