"""The runtime behind the transports: authentication, per-library serialization, delivery."""

from __future__ import annotations

import logging
import time
from typing import Any

from .background import BackgroundLoop
from .compaction import CompactionResult
from .delivery_order import DeliveryOrder
from .engine import EngineSettings, SyncEngine
from .files import FileStorage
from .files.service import FileService
from .hub import Connection, Hub
from .locks import LibraryLocks
from .messages import AckMessage, ClientMessage, OpMessage, SyncMessage
from .outbox import Envelope
from .presence import PresenceRegistry
from .profiles import ProfileCache, ProfileLoader
from .scheduler import LibraryScheduler
from .settings import Settings
from .storage import Database
from .tokens import TokenInfo, TokenVerifier

logger = logging.getLogger("flask_verdant")


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
        self.presence = PresenceRegistry(settings.presence_keepalive_seconds)
        self.profiles = ProfileCache(profiles)
        self.hub = Hub()
        self.locks = LibraryLocks()
        self.deliveries = DeliveryOrder()
        self.verifier = TokenVerifier(settings.token_secret)
        self.engine = SyncEngine(
            self.database,
            self.presence,
            self.profiles,
            EngineSettings(replica_truancy_minutes=settings.replica_truancy_minutes),
        )
        self.sweeper = BackgroundLoop(
            self.expire_presence,
            interval=max(0.05, min(1.0, settings.presence_keepalive_seconds / 10)),
            name="verdant-presence-sweeper",
        )
        self.compactions = LibraryScheduler(
            self._compaction_pass, settings.compaction_delay_seconds
        )

    def authenticate(self, token: str | None, *, remember: bool = False) -> TokenInfo:
        """``remember`` for a client that sends the token again and again (HTTP sync)."""
        return self.verifier.verify(token, remember=remember)

    def process(
        self,
        sender: TokenInfo,
        connection: Connection,
        messages: list[ClientMessage],
        *,
        owner: object | None = None,
    ) -> None:
        """Handle one batch in order under the library's lock, delivering as it goes.

        ``owner`` is the lasting connection (a websocket) the batch arrived on, if any: the
        replicas it speaks for leave presence when that connection closes. A batch without one
        came in an HTTP request, so the engine's pull rules apply to it.
        """
        library_id = sender.library_id
        envelopes: list[Envelope] = []
        with self.locks.hold(library_id):
            self.engine.check_ownership(sender, messages)
            for message in messages:
                envelopes += self.engine.handle(sender, message, pull=owner is None)
                if message.replica_id:
                    self.presence.claim(library_id, message.replica_id, owner)
            turn = self.deliveries.take(library_id)
        # Nothing is acknowledged before it is on disk; waiting outside the lock lets the next
        # commits share the fsync (group commit), and the turn keeps deliveries in commit order.
        with turn:
            self.database.wait_durable()
            self.hub.deliver(library_id, connection, envelopes)
        if self.presence:
            self.sweeper.wake()
        if not self.settings.disable_rebasing and any(
            isinstance(message, (OpMessage, SyncMessage, AckMessage)) for message in messages
        ):
            self.compactions.schedule(library_id)

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
            if not result.has_more:
                return total

    def _compaction_pass(self, library_id: str) -> bool:
        with self.locks.hold(library_id):
            result = self.engine.compact_library(library_id, self.settings.compaction_batch_size)
        if result.folded_operations or result.quarantined:
            logger.info(
                "Compacted library %s: folded %d operations of %d documents",
                library_id,
                result.folded_operations,
                len(result.documents),
            )
        return result.has_more

    def disconnect(self, sender: TokenInfo, owner: object) -> None:
        """A lasting connection closed: its replicas leave, and their users if it was the last."""
        library_id = sender.library_id
        with self.locks.hold(library_id):
            for departure in self.presence.release(library_id, owner):
                self.hub.publish(library_id, departure.message())

    def expire_presence(self) -> bool:
        """Announce users whose replicas stopped refreshing; say whether anyone is left."""
        for library_id in self.presence.expired_libraries(time.time()):
            with self.locks.hold(library_id):
                for departure in self.presence.expire(library_id, time.time()):
                    self.hub.publish(library_id, departure.message())
        return bool(self.presence)

    def evict_library(self, library_id: str) -> None:
        with self.locks.hold(library_id):
            self.engine.evict_library(library_id)
            # Connected replicas reconnect, are asked for their history and restore the library.
            self.hub.close_library(library_id)
        self.files.evict(library_id)
        logger.info("Evicted library %s", library_id)

    def evict_user(self, library_id: str, user_id: str) -> int:
        with self.locks.hold(library_id):
            return self.engine.evict_user(library_id, user_id)

    def library_info(self, library_id: str) -> dict[str, Any]:
        return self.engine.library_info(library_id)

    def describe_file(self, library_id: str, file_id: str) -> dict[str, Any] | None:
        """A file ref as the host sees it: ``{id, url, name, type}``, or None if unknown."""
        return self.files.describe(library_id, file_id)

    def library_presence(self, library_id: str) -> dict[str, Any]:
        return self.presence.peers(library_id)

    def going_away(self) -> None:
        """The process is stopping: clients reconnect at once (websockets close with 1001)."""
        self.hub.close_all()

    def close(self) -> None:
        self.going_away()
        self.files.close()
        self.sweeper.stop()
        self.compactions.cancel()
        self.database.close()
