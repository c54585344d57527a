"""Blinker signals, like Flask's own: what happened in the sync server, for the app to observe.

Each signal is sent with the Flask app as its sender, so a receiver connects as with Flask's
signals (``operations_stored.connect(receiver, app)``). Receivers run in the thread (or
greenlet) that handled the event, after its transaction committed; ``operations_stored`` and
``message_handled`` are sent while the library's lock is held (so in the library's order).
They must be quick and must not raise. The
metrics (``flask_verdant.metrics``) are receivers of these same signals.

The server reports through one ``ServerEvents`` object, with one call per hook, so the places
that report stay one line each. The metrics count messages through a plain callback there
instead of ``message_handled``: that hook runs for every message, and a blinker send costs
several microseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blinker import Namespace

from .messages import (
    AckMessage,
    ClientMessage,
    HeartbeatMessage,
    OpMessage,
    PresenceUpdateMessage,
    SyncMessage,
)
from .outbox import Broadcast, Envelope

if TYPE_CHECKING:
    from .compaction import CompactionResult
    from .tokens import TokenInfo

_signals = Namespace()

#: A lasting connection opened: a websocket, or a long-poll request being held.
#: Keyword arguments: ``library_id``, ``user_id``, ``transport`` (``"websocket"``/``"long-poll"``).
replica_connected = _signals.signal("verdant-replica-connected")
#: That connection closed. Same arguments as ``replica_connected``.
replica_disconnected = _signals.signal("verdant-replica-disconnected")
#: New operations were stored (and are being relayed). ``library_id``, ``replica_id``,
#: ``user_id``, ``operations`` (the new ones, as the client sent them).
operations_stored = _signals.signal("verdant-operations-stored")
#: A library's server copy was deleted (``evict_library``). ``library_id``.
library_evicted = _signals.signal("verdant-library-evicted")
#: The first operations stored in a library this process evicted: a replica restored it.
#: ``library_id``, ``replica_id``, ``user_id``.
library_restored = _signals.signal("verdant-library-restored")
#: A compaction pass committed. ``library_id``, ``result`` (a ``CompactionResult``).
compaction_done = _signals.signal("verdant-compaction-done")
#: A message was handled. ``library_id``, ``message_type``, ``transport`` (``"http"`` or
#: ``"websocket"``), ``transaction_seconds`` (its database transaction) and ``fanout_seconds``
#: (handing its replies and broadcasts to every connection).
message_handled = _signals.signal("verdant-message-handled")
#: A request, upgrade or frame was refused. ``code``: the error code (4000-5999) or the
#: websocket close code (1003, 1008, 1009, 1011); ``transport``.
request_refused = _signals.signal("verdant-request-refused")

_MESSAGE_TYPES: dict[type, str] = {
    SyncMessage: "sync",
    OpMessage: "op",
    AckMessage: "ack",
    HeartbeatMessage: "heartbeat",
    PresenceUpdateMessage: "presence-update",
}


# Evicted libraries remembered for ``library_restored``; older ones are never reported.
_EVICTIONS_REMEMBERED = 1024


def message_type(message: ClientMessage) -> str:
    return _MESSAGE_TYPES.get(type(message), "other")


#: Called for every handled message with its type, transport, transaction and fan-out seconds,
#: and the number of new operations it stored.
MessageObserver = Callable[[str, str, float, float, int], None]


class ServerEvents:
    """Sends the signals on behalf of one app's ``SyncServer``."""

    def __init__(self, sender: Any = None) -> None:
        self.sender = sender
        self.message_observers: list[MessageObserver] = []
        # Libraries this process evicted and nobody has restored yet, oldest first, bounded.
        self._evicted: dict[str, None] = {}
        self._evicted_lock = threading.Lock()

    def connected(self, sender: TokenInfo, transport: str) -> None:
        replica_connected.send(
            self.sender, library_id=sender.library_id, user_id=sender.user_id, transport=transport
        )

    def disconnected(self, sender: TokenInfo, transport: str) -> None:
        replica_disconnected.send(
            self.sender, library_id=sender.library_id, user_id=sender.user_id, transport=transport
        )

    def handled(
        self,
        sender: TokenInfo,
        message: ClientMessage,
        envelopes: list[Envelope],
        over_http: bool,
        started: float,
        stored: float,
    ) -> None:
        """One message went through: ``started`` and ``stored`` bracket its transaction."""
        observers = self.message_observers
        if not (observers or message_handled.receivers):  # no work when nobody listens
            relays = []
        else:
            kind = message_type(message)
            transport = "http" if over_http else "websocket"
            fanout = time.perf_counter() - stored
            relays = _relays(envelopes)
            count = sum(len(relay.get("operations", ())) for relay in relays)
            for observer in observers:
                observer(kind, transport, stored - started, fanout, count)
            if message_handled.receivers:
                message_handled.send(
                    self.sender,
                    library_id=sender.library_id,
                    message_type=kind,
                    transport=transport,
                    transaction_seconds=stored - started,
                    fanout_seconds=fanout,
                )
        if operations_stored.receivers or self._evicted:
            for relay in relays or _relays(envelopes):
                self._stored(sender, relay)

    def _stored(self, sender: TokenInfo, relay: dict[str, Any]) -> None:
        library_id = sender.library_id
        operations_stored.send(
            self.sender,
            library_id=library_id,
            replica_id=relay.get("replicaId"),
            user_id=sender.user_id,
            operations=relay.get("operations", []),
        )
        with self._evicted_lock:
            restored = library_id in self._evicted
            self._evicted.pop(library_id, None)
        if restored:
            library_restored.send(
                self.sender,
                library_id=library_id,
                replica_id=relay.get("replicaId"),
                user_id=sender.user_id,
            )

    def refused(self, code: int, transport: str) -> None:
        if not request_refused.receivers:
            return
        request_refused.send(self.sender, code=code, transport=transport)

    def evicted(self, library_id: str) -> None:
        with self._evicted_lock:
            self._evicted.pop(library_id, None)
            self._evicted[library_id] = None
            while len(self._evicted) > _EVICTIONS_REMEMBERED:
                del self._evicted[next(iter(self._evicted))]
        library_evicted.send(self.sender, library_id=library_id)

    def compacted(self, library_id: str, result: CompactionResult) -> None:
        compaction_done.send(self.sender, library_id=library_id, result=result)


def _relays(envelopes: list[Envelope]) -> list[dict[str, Any]]:
    """The ``op-re`` broadcasts among a message's outcome: the operations it stored."""
    return [
        envelope.message
        for envelope in envelopes
        if isinstance(envelope, Broadcast) and envelope.message.get("type") == "op-re"
    ]
