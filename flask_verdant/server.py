"""The runtime behind the transports: authentication, per-library serialization, delivery.

One ``SyncServer`` per app and process. Its connections live in the ``hub``; what crosses
processes goes through the ``broker`` (broadcasts, presence) and the database
(``coordination``: eviction, profile changes, the serving processes).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import json_codec
from .background import BackgroundLoop
from .broker import Broker, LocalBroker, ProcessIdentity
from .compaction import CompactionResult
from .coordination import EVICT_LIBRARY, EVICT_USER, PROFILE_CHANGED, Coordinator, Event
from .engine import EngineSettings, SyncEngine
from .errors import VerdantError
from .files import FileStorage
from .files.service import FileService
from .hosts import HostMap
from .hub import Connection, Hub, Member
from .locks import LibraryLocks
from .messages import AckMessage, ClientMessage, OpMessage, PresenceUpdateMessage, SyncMessage
from .outbox import Broadcast, Envelope, Reply
from .presence import Departure
from .presence_limits import PresenceAdmission
from .profiles import ProfileCache, ProfileLoader
from .scheduler import LibraryScheduler
from .settings import Settings
from .signals import ServerEvents
from .storage import Database
from .throttle import AddressBudget, RefusalThrottle
from .tokens import TokenInfo, TokenVerifier

logger = logging.getLogger("flask_verdant")

# Messages that write: their broadcasts are published inside their transaction (see ``broker``).
_WRITES = (SyncMessage, OpMessage, AckMessage)


# How long after a websocket's sync-resp its presence is reconciled (``_reconcile_presence``).
_PRESENCE_SETTLE_SECONDS = 1.0


def _peer_presence(envelopes: list[Envelope]) -> dict[str, Any] | None:
    """The ``peerPresence`` of a ``sync-resp`` among these envelopes, if there is one."""
    for envelope in envelopes:
        if isinstance(envelope, Reply) and envelope.message.get("type") == "sync-resp":
            return dict(envelope.message.get("peerPresence") or {})
    return None


def make_broker(settings: Settings, identity: ProcessIdentity) -> Broker:
    if settings.message_queue:
        try:
            from .redis_broker import RedisBroker
        except ImportError as exc:
            raise RuntimeError(
                "VERDANT_MESSAGE_QUEUE needs redis-py: pip install 'flask-verdant[redis]'"
            ) from exc
        return RedisBroker(
            settings.message_queue,
            settings.presence_keepalive_seconds,
            identity,
            settings.message_queue_prefix,
        )
    return LocalBroker(settings.presence_keepalive_seconds)


class SyncServer:
    """Everything one app's sync endpoint shares; lives in ``app.extensions["verdant"]``."""

    def __init__(
        self,
        settings: Settings,
        profiles: ProfileLoader | None,
        file_storage: FileStorage | None = None,
    ) -> None:
        self.settings = settings
        self.database = Database(
            settings.database_file, pool_size=settings.pool_size, durability=settings.durability
        )
        self.files = FileService(
            self.database,
            file_storage,
            max_bytes=settings.max_file_bytes,
            delete_after_seconds=settings.file_delete_after,
            sweep_interval_seconds=settings.file_sweep_interval,
        )
        self.identity = ProcessIdentity()
        self.broker = make_broker(settings, self.identity)
        self.presence = self.broker.presence
        self.presence_admission = PresenceAdmission(
            settings.presence_limits, settings.presence_keepalive_seconds
        )
        self.profiles = ProfileCache(profiles)
        self.hub = Hub(self.identity)
        self.hosts = HostMap(settings.hosts, settings.host_url)
        self.locks = LibraryLocks()
        self.verifier = TokenVerifier(settings.token_secret, settings.max_token_lifetime)
        self.refused_tokens = RefusalThrottle()
        self.refusing_addresses = AddressBudget()
        self.engine = SyncEngine(
            self.database,
            self.presence,
            self.profiles,
            EngineSettings(
                replica_truancy_minutes=settings.replica_truancy_minutes,
                max_replicas_per_user=settings.max_replicas_per_user,
                global_ack_delay_seconds=settings.global_ack_delay_seconds,
            ),
        )
        self.coordinator = Coordinator(
            self.database, self.identity, self.broker.description, self._apply_event
        )
        self.coordination = BackgroundLoop(
            self.coordinator.step, interval=0.5, name="verdant-coordinator"
        )
        self.sweeper = BackgroundLoop(
            self.expire_presence,
            interval=max(0.05, min(1.0, settings.presence_keepalive_seconds / 10)),
            name="verdant-presence-sweeper",
        )
        self.compactions = LibraryScheduler(
            self._compaction_pass, settings.compaction_delay_seconds
        )
        self.global_acks = LibraryScheduler(
            self._global_ack_pass, settings.global_ack_delay_seconds
        )
        self.events = ServerEvents()

    def authenticate(
        self, token: str | None, *, address: str | None = None, remember: bool = False
    ) -> TokenInfo:
        """Verify a token; refusals that repeat, or exceed the address's budget, are slowed.

        ``address`` is the client's (``request.remote_addr``: behind a proxy, the host applies
        Werkzeug's ``ProxyFix``). ``remember`` for a client that sends the token again and
        again (HTTP sync).
        """
        try:
            return self.verifier.verify(token, remember=remember)
        except VerdantError as error:
            repeated = self.refused_tokens.refused(token or "")
            over_budget = self.refusing_addresses.refused(address)
            if repeated or over_budget:
                error.quiet = True
                time.sleep(self.refused_tokens.delay)
            raise

    def admit(self, library_id: str) -> None:
        """Called before serving a request for a library: this process's machinery runs, and
        the request is refused if another host owns the library or the database is split."""
        self.hosts.check(library_id)
        self.coordinator.start()
        self.coordination.wake()
        self.broker.start(self.hub.deliver, self.coordinator.poll_events, self._resync)
        if self.broker.spans_processes:
            self.sweeper.wake()  # it also beats for this worker in the shared presence
        refusal = self.coordinator.refusal()
        if refusal is not None:
            raise refusal

    def connect(self, sender: TokenInfo, connection: Connection, *, lasting: bool) -> Member:
        """Register a connection in its library; ``lasting`` for a websocket."""
        member = self.hub.register(sender.library_id, sender.user_id, connection, lasting=lasting)
        if lasting:
            self.events.connected(sender, "websocket")
        return member

    def process(self, sender: TokenInfo, member: Member, messages: list[ClientMessage]) -> None:
        """Handle one batch in order under the library's lock, delivering as it goes.

        A message's broadcasts are published before its transaction commits (see ``broker``);
        its replies reach the sender once the commit is on disk. A batch on a lasting
        connection (a websocket) makes the replicas it speaks for present while that connection
        is open; one on an HTTP request follows the engine's pull rules.
        """
        library_id = sender.library_id
        pull = not member.lasting
        owner = member.id if member.lasting else None
        replies: list[str] = []
        shown: dict[str, Any] | None = None
        generation = 0
        with member.answering() as answer:
            with self.locks.hold(library_id):
                if not member.replica_ids.issuperset(
                    m.replica_id for m in messages if m.replica_id
                ):
                    # Bindings are permanent: what this connection spoke for is checked once.
                    self.engine.check_ownership(sender, messages)
                self._admit_presence(sender, messages, owner)
                for message in messages:
                    started = time.perf_counter()
                    if isinstance(message, _WRITES):
                        with self.database.write() as tx:
                            envelopes = self.engine.handle(
                                sender, message, pull=pull, connection=owner
                            )
                            stored = time.perf_counter()
                            replies += self._publish(library_id, member, envelopes)
                            if isinstance(message, SyncMessage) and member.lasting:
                                # Its answer holds everything up to here (``Hub.deliver``).
                                member.saw(tx.last_server_order(library_id))
                    else:
                        envelopes = self.engine.handle(sender, message, pull=pull, connection=owner)
                        stored = time.perf_counter()
                        replies += self._publish(library_id, member, envelopes)
                    self.events.handled(sender, message, envelopes, pull, started, stored)
                    answered = _peer_presence(envelopes)
                    if member.lasting and answered is not None:
                        shown = answered
                        generation = member.start_settling()
                    replica_id = message.replica_id
                    if not replica_id:
                        continue
                    now = time.time()
                    if (
                        isinstance(message, PresenceUpdateMessage)
                        or replica_id not in member.replica_ids
                    ):
                        member.replica_ids.add(replica_id)
                        self.presence.claim(library_id, replica_id, owner, now)
                    self.presence_admission.spoke(
                        library_id, sender.user_id, replica_id, owner, now
                    )
            # Nothing is acknowledged before it is on disk. Waiting outside the lock lets the
            # next commits share the fsync (group commit, ``storage.durability``).
            self.database.wait_durable()
            for reply in replies:
                answer(reply)
        if member.lasting and shown is not None:
            timer = threading.Timer(
                _PRESENCE_SETTLE_SECONDS, self._reconcile_presence, (member, generation, shown)
            )
            timer.daemon = True
            timer.start()
        if self.presence.watching():
            self.sweeper.wake()
        if any(isinstance(message, _WRITES) for message in messages):
            if self.settings.global_ack_delay_seconds > 0:
                self.global_acks.schedule(library_id)
            if not self.settings.disable_rebasing:
                self.compactions.schedule(library_id)

    def _reconcile_presence(self, member: Member, generation: int, shown: dict[str, Any]) -> None:
        """Tell a websocket client what changed in presence since its ``sync-resp``.

        Store clients apply a ``sync-resp``'s ``peerPresence`` (which replaces every peer) only
        after storing its operations, so presence changes that arrive right after it are
        applied first and then lost (docs/protocol.md, "Presence"). After a mass reconnect
        (a restart, a message queue coming back) that happens to many. A moment later the
        connection gets the difference between what it was shown and what is true now; the
        departures meanwhile were held back for it (``Member.start_settling``).
        """
        library_id = member.library_id

        def difference(told: dict[str, str]) -> list[tuple[str, str]]:
            if member not in self.hub.members(library_id):
                return []
            current = self.presence.peers(library_id)
            known = {user_id: str(info.get("replicaId", "")) for user_id, info in shown.items()}
            messages: list[tuple[str, str]] = []
            for user_id, replica_id in {**known, **told}.items():
                if user_id not in current:
                    departure = Departure(library_id, replica_id, user_id)
                    messages.append((json_codec.dumps(departure.message()), replica_id))
            for user_id, info in current.items():
                if shown.get(user_id) != info:
                    changed = {
                        "type": "presence-changed",
                        "replicaId": info.get("replicaId"),
                        "userInfo": info,
                    }
                    messages.append((json_codec.dumps(changed), str(info.get("replicaId"))))
            return messages

        member.settle(generation, difference)

    def _publish(self, library_id: str, member: Member, envelopes: list[Envelope]) -> list[str]:
        """Publish the broadcasts; return what the sender gets, in emission order."""
        replies: list[str] = []
        for envelope in envelopes:
            payload = json_codec.dumps(envelope.message)
            if isinstance(envelope, Broadcast):
                self.broker.publish(
                    library_id, payload, member.id, envelope.orders, envelope.audience
                )
                if envelope.include_sender:
                    replies.append(payload)
            else:
                replies.append(payload)
        return replies

    def _admit_presence(
        self, sender: TokenInfo, messages: list[ClientMessage], owner: object | None
    ) -> None:
        """The presence limits (``presence_limits``), for a whole batch before any applies."""
        now = time.time()
        for message in messages:
            if message.replica_id:
                self.presence_admission.check_speaker(owner, message.replica_id)
        for message in messages:
            if isinstance(message, PresenceUpdateMessage):
                size = len(json_codec.dumps(message.presence).encode())
                self.presence_admission.admit_update(
                    sender.library_id, sender.user_id, message.replica_id, size, owner, now
                )

    def compact(self, library_id: str) -> CompactionResult:
        """Run compaction passes until nothing more can be folded; for the CLI and tests."""
        total = CompactionResult(library_id)
        while True:
            with self.locks.hold(library_id):
                result = self.engine.compact_library(
                    library_id, self.settings.compaction_batch_size
                )
            total.folded_operations += result.folded_operations
            total.documents.extend(result.documents)
            total.quarantined.extend(result.quarantined)
            total.dropped_file_ids.extend(result.dropped_file_ids)
            self.events.compacted(library_id, result)
            if not result.has_more:
                return total

    def _compaction_pass(self, library_id: str) -> bool:
        if not self.broker.claim_compaction(library_id, self.settings.compaction_delay_seconds):
            return False  # another process runs this burst's pass
        with self.locks.hold(library_id):
            result = self.engine.compact_library(library_id, self.settings.compaction_batch_size)
        self.events.compacted(library_id, result)
        if result.folded_operations or result.quarantined:
            logger.info(
                "Compacted library %s: folded %d operations of %d documents",
                library_id,
                result.folded_operations,
                len(result.documents),
            )
        return result.has_more

    def _global_ack_pass(self, library_id: str) -> bool:
        """Publish the library's global ack once it has waited (``global_ack``); compact then."""
        if not self.engine.global_ack_waiting(library_id):
            return False
        with self.locks.hold(library_id), self.database.write():
            envelopes, waiting = self.engine.release_global_ack(library_id)
            for envelope in envelopes:
                self.broker.publish(library_id, json_codec.dumps(envelope.message), None)
        if envelopes and not self.settings.disable_rebasing:
            self.compactions.schedule(library_id)
        return waiting

    def disconnect(self, sender: TokenInfo, member: Member) -> None:
        """A connection closed: its replicas leave, and their users if it was the last."""
        self.hub.unregister(member)
        if not member.lasting:
            return
        library_id = sender.library_id
        self.presence_admission.release(member.id)
        with self.locks.hold(library_id):
            for departure in self.presence.release(library_id, member.id):
                self._announce(departure)
        self.events.disconnected(sender, "websocket")

    def expire_presence(self) -> bool:
        """Announce users whose replicas stopped refreshing; say whether anyone is left."""
        for departure in self.presence.sweep(time.time()):
            self._announce(departure)
        return self.presence.watching()

    def _resync(self, library_id: str | None) -> None:
        """Broadcasts may have been missed: close websockets so their clients sync."""
        # No library lock: this may run inside ``process`` (a failed publish, delivered here).
        if library_id is None:
            closed = self.hub.close_lasting()
        else:
            closed = self.hub.close_library(library_id)
        logger.warning(
            "Closed %d connections%s that may have missed broadcasts; their clients sync again",
            closed,
            "" if library_id is None else f" of library {library_id}",
        )

    def _announce(self, departure: Departure) -> None:
        if not departure.announced:
            payload = json_codec.dumps(departure.message())
            self.broker.publish(departure.library_id, payload, None)

    # administration: applied here, and through the events table in every other process

    def evict_library(self, library_id: str) -> None:
        with self.locks.hold(library_id):
            with self.database.write():
                self.engine.evict_library(library_id)
                self.coordinator.record(EVICT_LIBRARY, library_id)
            self.presence_admission.clear(library_id)
            # Connected replicas reconnect, are asked for their history and restore the library.
            self.hub.close_library(library_id)
        self.broker.announce_events()
        self.files.evict(library_id)
        self.events.evicted(library_id)
        logger.info("Evicted library %s", library_id)

    def evict_user(self, library_id: str, user_id: str) -> int:
        with self.locks.hold(library_id):
            with self.database.write():
                removed = self.engine.evict_user(library_id, user_id)
                self.coordinator.record(EVICT_USER, library_id, user_id)
            self.hub.close_user(library_id, user_id)
        self.broker.announce_events()
        return removed

    def refresh_profile(self, user_id: str) -> None:
        """Forget a user's cached profile here and in every other process."""
        self.coordinator.record(PROFILE_CHANGED, "", user_id)
        self.profiles.forget(user_id)
        self.broker.announce_events()

    def _apply_event(self, event: Event) -> None:
        """Another process changed something this process holds in memory."""
        if event.kind == EVICT_LIBRARY:
            with self.locks.hold(event.library_id):
                self.presence.clear(event.library_id)
                closed = self.hub.close_library(event.library_id)
            logger.info(
                "Library %s was evicted elsewhere: closed %d connections", event.library_id, closed
            )
        elif event.kind == EVICT_USER and event.user_id is not None:
            with self.locks.hold(event.library_id):
                self.hub.close_user(event.library_id, event.user_id)
        elif event.kind == PROFILE_CHANGED and event.user_id is not None:
            self.profiles.forget(event.user_id)

    def library_info(self, library_id: str) -> dict[str, Any]:
        return self.engine.library_info(library_id)

    def describe_file(self, library_id: str, file_id: str) -> dict[str, Any] | None:
        """A file ref as the host sees it: ``{id, url, name, type}``, or None if unknown."""
        return self.files.describe(library_id, file_id)

    def library_presence(self, library_id: str) -> dict[str, Any]:
        return self.presence.peers(library_id)

    def ready(self) -> dict[str, bool]:
        """What readiness depends on, each checked now; the app is ready when all are true.

        ``serving``: this process is not refusing sync because several processes serve the
        database without a shared message queue (``coordination``).
        """
        checks = {
            "database": self.database.reachable(),
            "serving": self.coordinator.refusal() is None,
        }
        if self.broker.spans_processes:
            checks["message_queue"] = self.broker.ready()
        return checks

    def going_away(self) -> None:
        """The process is stopping: clients reconnect at once (websockets close with 1001)."""
        self.hub.close_all()

    def close(self) -> None:
        self.going_away()
        self.coordinator.leave()
        self.coordination.stop()
        self.files.close()
        self.sweeper.stop()
        self.compactions.cancel()
        self.global_acks.cancel()
        self.broker.close()
        self.database.close()
