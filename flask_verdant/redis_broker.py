"""A broker over Redis pub/sub, for several workers and hosts (``VERDANT_MESSAGE_QUEUE``).

Every broadcast is published on one channel and every worker delivers what it receives to its
own connections of that library, its own publications included, so all workers see one order:
the channel's, which is the order of the publishers' sqlite commits (see ``broker``).

When Redis goes away each worker goes on serving its own sockets (a broadcast is then delivered
locally only), says so once in the log, and, when Redis is back, closes its websockets so their
clients reconnect and catch up through ``sync``: nothing stored is lost, only live relays of the
outage are replaced by a resync.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis

from . import json_codec
from .broker import Deliver, Orders, ProcessIdentity, Resync
from .presence import PresenceStore
from .redis_presence import ERRORS, Outage, RedisPresence, frame

logger = logging.getLogger("flask_verdant")

_ERRORS = ERRORS
_DELIVER = "D"
_EVENTS = "E"


class RedisBroker:
    spans_processes = True

    def __init__(
        self,
        url: str,
        presence_keepalive_seconds: float,
        identity: ProcessIdentity,
        namespace: str = "verdant",
    ) -> None:
        self.description = f"redis {_without_password(url)}"
        self._redis = redis.Redis.from_url(
            # Short: a publish runs inside a write transaction, and an unreachable Redis must
            # not hold it long (on a LAN, Redis answers in well under a millisecond).
            url,
            socket_timeout=1.0,
            socket_connect_timeout=0.5,
            health_check_interval=15,
        )
        self._channel = f"{namespace}:bus"
        self._outage = Outage(self.description)
        self._presence = RedisPresence(
            self._redis,
            namespace,
            presence_keepalive_seconds,
            identity,
            outage=self._outage,
            channel=self._channel,
        )
        self.presence: PresenceStore = self._presence
        self._lock = threading.Lock()
        self._pid = -1
        self._stopped = threading.Event()
        self._subscribed = threading.Event()
        self._deliver: Deliver | None = None
        self._events_pending: Callable[[], None] = _nothing
        self._resync: Resync = _resync_nothing

    def start(
        self,
        deliver: Deliver,
        events_pending: Callable[[], None],
        resync: Resync,
    ) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._deliver, self._events_pending, self._resync = deliver, events_pending, resync
            self._subscribed.clear()
            threading.Thread(target=self._listen, name="verdant-redis", daemon=True).start()
        # Publications made before the subscription holds would not reach this worker.
        if not self._subscribed.wait(2.0):
            logger.warning("Subscribing to the message queue takes long; serving anyway")

    def publish(
        self,
        library_id: str,
        payload: str,
        exclude: str | None,
        orders: Orders | None = None,
        audience: str | None = None,
    ) -> None:
        try:
            self._redis.publish(
                self._channel, frame(library_id, payload, exclude, orders, audience)
            )
            return
        except _ERRORS as error:
            self._lost(error)
        if self._deliver is not None:
            self._deliver(library_id, payload, exclude, orders, audience)

    def announce_events(self) -> None:
        try:
            self._redis.publish(
                self._channel, json_codec.dumps([_EVENTS, "", None, None, None]) + "\n"
            )
        except _ERRORS as error:
            self._lost(error)

    def claim_compaction(self, library_id: str, seconds: float) -> bool:
        try:
            key = f"{self._channel}:compacting:{library_id}"
            return bool(self._redis.set(key, os.getpid(), nx=True, px=max(1, int(seconds * 1000))))
        except _ERRORS:
            return True

    def ready(self) -> bool:
        try:
            return bool(self._redis.ping())
        except _ERRORS:
            return False

    def close(self) -> None:
        self._stopped.set()
        try:
            if self._pid == os.getpid():
                self._presence.leave()
        except _ERRORS:
            pass
        self._redis.close()

    def _lost(self, error: BaseException) -> None:
        self._outage.lost(error)

    def _listen(self) -> None:
        backoff = 0.2
        while not self._stopped.is_set():
            try:
                pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self._channel)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._receive(message)
                    elif self._outage.down:
                        self._redis.ping()
                        self._recovered()
                    backoff = 0.2
            except Exception as error:
                if self._stopped.is_set():
                    return  # closed under the listener's feet
                self._lost(error)
                self._subscribed.set()  # let requests through: local delivery goes on
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _receive(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._subscribed.set()
            if self._outage.down:
                self._recovered()
            return
        data = message.get("data")
        if kind != "message" or not isinstance(data, bytes):
            return
        header, _, payload = data.decode("utf-8", "surrogatepass").partition("\n")
        what, library_id, exclude, orders, audience = json_codec.loads(header)
        if what == _DELIVER and self._deliver is not None:
            self._deliver(library_id, payload, exclude, tuple(orders) if orders else None, audience)
        elif what == _EVENTS:
            self._events_pending()

    def _recovered(self) -> None:
        self._outage.down = False
        logger.warning(
            "The message queue (%s) is back; resyncing this worker's clients", self.description
        )
        self._events_pending()
        self._resync(None)


def _nothing() -> None:
    return None


def _resync_nothing(library_id: str | None) -> None:
    return None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        return urlunsplit(parts._replace(netloc=netloc))
    return url
