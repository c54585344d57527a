"""The protocol core: the rules of docs/protocol.md ("Handling each message") applied to one
validated message.

No Flask, sockets or threads here. Given the sender's verified token and a message, the engine
reads and writes storage in one transaction and returns the envelopes to deliver, in emission
order. Callers serialize calls per library (see ``locks``), which reproduces the single-threaded
semantics of the reference server.

Messages that arrive over HTTP (``pull``) follow extra rules, because the 3.x pull client drops
edits made before its first sync answer and folds them away locally
(docs/protocol.md, "Pull clients and early edits (R1-R7)"): R1, a new pull replica's first
storing sync is followed by ``need-since`` so it sends its full history; R2, that history is
merged, not reset; R3, no ``server-ack`` over HTTP; R4 and R5, a pull replica is acknowledged
one poll behind, and counted in the global ack only that far; R7, every insert is
de-duplicated, including operations already folded into a baseline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import authz
from .compaction import CompactionResult, compact
from .errors import ErrorCode, VerdantError
from .global_ack import advance as advance_global_ack
from .json_codec import RawJSON
from .messages import (
    AckMessage,
    ClientMessage,
    DisconnectingMessage,
    HeartbeatMessage,
    OpMessage,
    PresenceUpdateMessage,
    SyncMessage,
)
from .nonce import encode_nonce
from .outbox import Broadcast, Envelope, Reply
from .patches import COMMON_3
from .presence import PresenceStore
from .profiles import ProfileCache
from .refs import is_parsed_file_ref
from .snapshots import FileDescriber, hydrate
from .storage import Database, OperationsJSON, ReplicaRecord, Transaction
from .tokens import ReplicaType, TokenInfo

logger = logging.getLogger("flask_verdant")

_GLOBAL_ACK_TYPES = (ReplicaType.REALTIME, ReplicaType.PUSH)
_STORE5_NEWCOMERS_LIMIT = 10_000
# A heartbeat writes "last seen" at most this often per replica (``_heartbeat_touch_due``),
# remembered for this many replicas.
_HEARTBEAT_TOUCH_SECONDS = 60.0
_TOUCHED_LIMIT = 20_000


@dataclass(frozen=True)
class EngineSettings:
    replica_truancy_minutes: float = 60 * 24 * 14
    # Bindings are permanent, so a user must not be able to make up replica ids without end.
    max_replicas_per_user: int = 1000
    # How long a computed global ack waits before it is published (``global_ack``).
    global_ack_delay_seconds: float = 2.0


class SyncEngine:
    def __init__(
        self,
        database: Database,
        presence: PresenceStore,
        profiles: ProfileCache,
        settings: EngineSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.presence = presence
        self.profiles = profiles
        self.settings = settings
        self._clock = clock
        # store 5.x replicas seen in presence before their first sync (insertion-ordered)
        self._store5_newcomers: dict[tuple[str, str], None] = {}
        # when a heartbeat last wrote each replica's "last seen" time (least recent first)
        self._touched: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._touched_lock = threading.Lock()

    # intake

    def check_ownership(self, sender: TokenInfo, messages: list[ClientMessage]) -> None:
        """Refuse a batch that names a replica of another user, before any of it is applied.

        A replica id is bound to the first user the server sees it from, whatever the message
        (presence before sync included), and the binding outlives eviction: peers see each
        other's replica ids, and a squatter must never lock the owner out.
        """
        replica_ids = sorted({m.replica_id for m in messages if m.replica_id})
        if not replica_ids:
            return
        with self.database.read() as tx:
            owners = tx.replica_owners(sender.library_id, replica_ids)
        _refuse_others(sender, owners)
        unbound = [replica_id for replica_id in replica_ids if replica_id not in owners]
        if unbound:
            with self.database.write() as tx:
                limit = self.settings.max_replicas_per_user
                if tx.count_user_replicas(sender.library_id, sender.user_id) + len(unbound) > limit:
                    raise VerdantError(
                        ErrorCode.FORBIDDEN,
                        f"A user may have at most {limit} replicas in a library",
                    )
                tx.bind_replicas(sender.library_id, sender.user_id, unbound)
                # Another process may have bound one first.
                owners = tx.replica_owners(sender.library_id, unbound)
            _refuse_others(sender, owners)

    def handle(
        self,
        sender: TokenInfo,
        message: ClientMessage,
        *,
        pull: bool = False,
        connection: str | None = None,
    ) -> list[Envelope]:
        """Apply one message; ``pull`` marks one that came in an HTTP request (see above),
        ``connection`` the websocket it came on (``presence.PresenceStore.claim``)."""
        now = self._clock()
        if isinstance(message, HeartbeatMessage):
            if message.replica_id and self._heartbeat_touch_due(
                sender.library_id, message.replica_id, now
            ):
                # A connected replica that only heartbeats is still here: it must not turn
                # truant and stop holding back compaction of what it has not acknowledged.
                with self.database.write(durable=False) as tx:
                    tx.touch_replica(sender.library_id, message.replica_id, _ms(now))
            self._refresh_presence(sender, message.replica_id, now)
            return [Reply({"type": "heartbeat-response"})]
        if isinstance(message, PresenceUpdateMessage):
            return self._handle_presence_update(sender, message, now)
        if isinstance(message, DisconnectingMessage):
            # The replica leaves now, not when the socket's close is noticed.
            departure = self.presence.remove(sender.library_id, message.replica_id, connection)
            if departure is None or departure.announced:
                return []
            return [Broadcast(departure.message(), include_sender=False)]
        with self.database.write() as tx:
            tx.ensure_library(sender.library_id)
            if isinstance(message, SyncMessage):
                envelopes = self._handle_sync(tx, sender, message, now, pull)
            elif isinstance(message, OpMessage):
                envelopes = self._handle_op(tx, sender, message, now, pull)
            elif isinstance(message, AckMessage):
                envelopes = self._handle_ack(tx, sender, message, now)
            else:
                envelopes = []
            if message.replica_id:
                tx.touch_replica(sender.library_id, message.replica_id, _ms(now))
        if message.replica_id:
            self._remember_touch(sender.library_id, message.replica_id, now)
        self._refresh_presence(sender, message.replica_id, now)
        return envelopes

    # sync (docs/protocol.md: "sync", "Differences from the official server", R1-R7)

    def _handle_sync(
        self, tx: Transaction, sender: TokenInfo, m: SyncMessage, now: float, pull: bool
    ) -> list[Envelope]:
        library_id = sender.library_id
        can_write = sender.type.can_write
        known = tx.get_replica(library_id, m.replica_id)
        if pull and known and known.awaiting_history and m.since_is_null and can_write:
            # Checked before resyncAll: the client may answer before it has stored the
            # acknowledgement of its first sync, and then still claims to know nothing.
            return self._merge_full_history(tx, sender, known, m, now)
        if m.resync_all:
            tx.delete_replica(library_id, m.replica_id)
        replica, status = self._get_or_create_replica(tx, sender, m.replica_id, now)
        changes_since = replica.acked_logical_time if status == "existing" else None
        empty_library = changes_since is None and tx.is_library_empty(library_id)
        overwrite = (m.resync_all or status != "existing") and not empty_library
        if empty_library and status == "new" and not m.since_is_null and can_write:
            return [Reply({"type": "need-since", "since": None})]
        if not empty_library and m.since_is_null:
            overwrite = True
        if not can_write and (m.operations or m.baselines) and not empty_library:
            # A read-only replica cannot contribute; make it mirror the server instead.
            overwrite = True

        if overwrite:
            # A replica told to drop its data must receive everything, not what follows a
            # stale acknowledgement (docs/protocol.md, "Differences from the official server").
            tx.reset_replica_acks(library_id, m.replica_id)
            operations, baselines = tx.reset_answer_json(library_id, sender.user_id)
        else:
            operations = tx.operations_json_after(
                library_id, replica.acked_server_order, sender.user_id
            )
            baselines = tx.baselines_json_after(
                library_id,
                changes_since,
                sender.user_id,
                received_server_order=replica.acked_server_order,
            )

        acked_timestamp = m.timestamp
        if pull and not m.since_is_null and status == "existing" and replica.last_sync_timestamp:
            # Pull rule R5: acknowledge one poll behind.
            acked_timestamp = min(replica.last_sync_timestamp, m.timestamp)
        stores = not overwrite and can_write
        # Pull rule R1: a new pull replica may have dropped edits while this sync was in flight.
        ask_for_history = pull and stores and status == "new" and m.since_is_null
        tx.record_sync(library_id, m.replica_id, m.timestamp, ask_for_history)

        envelopes: list[Envelope] = []
        if stores:
            inserted = self._store_history(tx, sender, m)
            tx.advance_acked_logical_time(library_id, m.replica_id, acked_timestamp)
            if inserted:
                envelopes.extend(self._relay(tx, library_id, m.replica_id, inserted, now))
        envelopes.append(
            self._sync_response(
                tx, library_id, operations, baselines, overwrite, acked_timestamp, now
            )
        )
        if ask_for_history:
            envelopes.append(Reply({"type": "need-since", "since": None}))
        return envelopes

    def _merge_full_history(
        self,
        tx: Transaction,
        sender: TokenInfo,
        replica: ReplicaRecord,
        m: SyncMessage,
        now: float,
    ) -> list[Envelope]:
        """Pull rule R2: take the full history a new pull replica sends after R1, merging it."""
        library_id = sender.library_id
        operations = tx.operations_json_after(
            library_id, replica.acked_server_order, sender.user_id
        )
        baselines = tx.baselines_json_after(
            library_id,
            replica.acked_logical_time,
            sender.user_id,
            received_server_order=replica.acked_server_order,
        )
        inserted = self._store_history(tx, sender, m)
        tx.advance_acked_logical_time(library_id, m.replica_id, m.timestamp)
        tx.record_sync(library_id, m.replica_id, m.timestamp, False)
        envelopes: list[Envelope] = []
        if inserted:
            envelopes.extend(self._relay(tx, library_id, m.replica_id, inserted, now))
        envelopes.append(
            self._sync_response(tx, library_id, operations, baselines, False, m.timestamp, now)
        )
        return envelopes

    def _store_history(
        self, tx: Transaction, sender: TokenInfo, m: SyncMessage
    ) -> list[dict[str, Any]]:
        """Store a sync's operations and baselines as operations; return the new ones.

        A client's baseline holds edits it folded locally, perhaps before they ever reached the
        server, under an old timestamp. Stored as a baseline, replicas that already synced past
        that timestamp would never receive it; stored as an ``initialize`` at its timestamp,
        every replica receives it through the operation history, in time order. Only baselines
        of documents nobody else has written are taken, so a stale copy never wins over others'
        edits. Known operations are skipped (R7). A private document stays private: its
        ``authz`` keys are stored, the originator placeholder as the sender.
        """
        library_id = sender.library_id
        authz.claim(m.operations, sender.user_id)
        authz.claim(m.baselines, sender.user_id)
        candidates = [baseline for baseline in m.baselines if baseline.get("snapshot") is not None]
        alone = tx.only_known_to(
            library_id, m.replica_id, [(b["oid"], b["timestamp"]) for b in candidates]
        )
        adopted = [
            {
                "oid": baseline["oid"],
                "timestamp": baseline["timestamp"],
                "data": {"op": "initialize", "value": baseline["snapshot"]},
                **({"authz": baseline["authz"]} if "authz" in baseline else {}),
            }
            for baseline, taken in zip(candidates, alone, strict=True)
            if taken
        ]
        inserted = tx.insert_operations(library_id, m.replica_id, [*m.operations, *adopted])
        tx.note_file_references(library_id, _file_references(inserted))
        return inserted

    def _relay(
        self,
        tx: Transaction,
        library_id: str,
        replica_id: str,
        operations: list[dict[str, Any]],
        now: float,
    ) -> list[Broadcast]:
        """``op-re`` to the library's other connections: the operations that were new.

        Operations of private documents go only to their user's connections, in an ``op-re``
        of their own; the public ones to everyone.
        """
        audiences: dict[str | None, list[dict[str, Any]]] = {}
        for operation in operations:
            key = operation.get("authz")
            audiences.setdefault(None if key is None else authz.check(key), []).append(operation)
        global_ack = self._global_ack(tx, library_id, now)
        last = tx.last_server_order(library_id)
        # Each op-re carries the server orders of the whole insert, so a connection outside
        # one audience still counts them as seen (``hub.Hub.deliver``).
        orders = (last - len(operations) + 1, last)
        return [
            Broadcast(
                _omit_none(
                    {
                        "type": "op-re",
                        "operations": relayed,
                        "baselines": [],
                        "replicaId": replica_id,
                        "globalAckTimestamp": global_ack,
                    }
                ),
                include_sender=False,
                orders=orders,
                audience=audience,
            )
            for audience, relayed in audiences.items()
        ]

    def _sync_response(
        self,
        tx: Transaction,
        library_id: str,
        operations: OperationsJSON,
        baselines: RawJSON,
        overwrite: bool,
        acked_timestamp: str,
        now: float,
    ) -> Reply:
        response: dict[str, Any] = {
            "type": "sync-resp",
            "operations": operations.array,
            "baselines": baselines,
            "globalAckTimestamp": self._global_ack(tx, library_id, now),
            "peerPresence": self.presence.peers(library_id),
            "overwriteLocalData": overwrite,
            "ackedTimestamp": acked_timestamp,
        }
        if operations.last_server_order:
            response["ackThisNonce"] = encode_nonce(operations.last_server_order)
        return Reply(_omit_none(response))

    def _get_or_create_replica(
        self, tx: Transaction, sender: TokenInfo, replica_id: str, now: float
    ) -> tuple[ReplicaRecord, str]:
        replica = tx.get_replica(sender.library_id, replica_id)
        if replica is None:
            created = tx.create_replica(sender.library_id, replica_id, sender.user_id, sender.type)
            newcomer = (sender.library_id, replica_id)
            if newcomer in self._store5_newcomers:
                del self._store5_newcomers[newcomer]
                tx.set_patch_model(sender.library_id, replica_id, COMMON_3)
            return created, "new"
        if replica.type != sender.type:
            tx.set_replica_type(sender.library_id, replica_id, sender.type)
        if replica.last_seen_ms is not None and replica.last_seen_ms < self._truancy_cutoff(now):
            return replica, "truant"
        return replica, "existing"

    # op (docs/protocol.md, "op")

    def _handle_op(
        self, tx: Transaction, sender: TokenInfo, m: OpMessage, now: float, pull: bool
    ) -> list[Envelope]:
        if not m.operations:
            return []
        if not sender.type.can_write:
            return [Reply({"type": "forbidden"})]
        library_id = sender.library_id
        if tx.get_replica(library_id, m.replica_id) is None:
            # Clients sync before they send operations, so the server has lost this replica
            # (an eviction, possibly while this request was in flight). Storing the operations
            # would leave a fragment that blocks the library's restoration; ask for everything.
            return [Reply({"type": "need-since", "since": None})]
        authz.claim(m.operations, sender.user_id)
        inserted = tx.insert_operations(library_id, m.replica_id, m.operations)
        tx.note_file_references(library_id, _file_references(inserted))
        envelopes: list[Envelope] = []
        if inserted:
            _warn_if_older_than_global_ack(tx, library_id, m.replica_id, inserted)
            envelopes.extend(self._relay(tx, library_id, m.replica_id, inserted, now))
        if pull:
            # Pull rules R3 and R4: a pull client would take a server-ack as proof that edits
            # it silently dropped were synced, and must not be counted past what R5 acknowledged.
            return envelopes
        envelopes.append(Reply({"type": "server-ack", "timestamp": m.timestamp}))
        previous = tx.stored_global_ack(library_id)
        tx.advance_acked_logical_time(library_id, m.replica_id, m.operations[-1]["timestamp"])
        envelopes.extend(self._global_ack_changes(tx, library_id, previous, now))
        return envelopes

    # ack (docs/protocol.md, "ack": nonces are capped at the library's counter)

    def _handle_ack(
        self, tx: Transaction, sender: TokenInfo, m: AckMessage, now: float
    ) -> list[Envelope]:
        library_id = sender.library_id
        if m.nonce_server_order is not None:
            server_order = min(m.nonce_server_order, tx.last_server_order(library_id))
            tx.advance_acked_server_order(library_id, m.replica_id, server_order)
            return []
        if not m.timestamp:
            return []
        previous = tx.stored_global_ack(library_id)
        tx.advance_acked_logical_time(library_id, m.replica_id, m.timestamp)
        tx.advance_acked_server_order(
            library_id, m.replica_id, tx.server_order_of_timestamp(library_id, m.timestamp)
        )
        return self._global_ack_changes(tx, library_id, previous, now)

    # presence (docs/protocol.md, "Presence")

    def _handle_presence_update(
        self, sender: TokenInfo, m: PresenceUpdateMessage, now: float
    ) -> list[Envelope]:
        if m.has_internal:
            self._note_store5_replica(sender.library_id, m.replica_id)
        profile = self.profiles.get(sender.user_id)
        user_info = self.presence.update(
            sender.library_id, m.replica_id, sender.user_id, m.changes, profile, now
        )
        # lastSeen is not touched here: pull clients send presence before sync, and a touch
        # would make a truant replica look fresh right before its sync is judged.
        return [
            Broadcast(
                {"type": "presence-changed", "replicaId": m.replica_id, "userInfo": user_info},
                include_sender=True,
            )
        ]

    def _note_store5_replica(self, library_id: str, replica_id: str) -> None:
        """Compaction must fold this replica's operations as store 5.x does (common 3).

        A new client sends its presence right before its first sync, which creates the
        replica: until then it waits in a small bounded set, consulted at creation.
        """
        with self.database.read() as tx:
            replica = tx.get_replica(library_id, replica_id)
        if replica is None:
            self._store5_newcomers[(library_id, replica_id)] = None
            while len(self._store5_newcomers) > _STORE5_NEWCOMERS_LIMIT:
                del self._store5_newcomers[next(iter(self._store5_newcomers))]
        elif replica.patch_model != COMMON_3:
            with self.database.write() as tx:
                tx.set_patch_model(library_id, replica_id, COMMON_3)

    def _heartbeat_touch_due(self, library_id: str, replica_id: str, now: float) -> bool:
        """Whether a heartbeat should write the replica's "last seen" time.

        Truancy is counted in days, a heartbeat comes every 15 s: one write a minute at most
        (a hundredth of the truancy time, if that is shorter) keeps it exact enough and takes
        a write transaction off nearly every heartbeat.
        """
        interval = min(_HEARTBEAT_TOUCH_SECONDS, self.settings.replica_truancy_minutes * 0.6)
        with self._touched_lock:
            last = self._touched.get((library_id, replica_id))
        if last is not None and now - last < interval:
            return False
        self._remember_touch(library_id, replica_id, now)
        return True

    def _remember_touch(self, library_id: str, replica_id: str, now: float) -> None:
        """Note that the replica's "last seen" was just written (by any message)."""
        key = (library_id, replica_id)
        with self._touched_lock:
            self._touched[key] = now
            self._touched.move_to_end(key)
            while len(self._touched) > _TOUCHED_LIMIT:
                self._touched.popitem(last=False)

    def _refresh_presence(self, sender: TokenInfo, replica_id: str | None, now: float) -> None:
        if replica_id:
            self.presence.refresh(sender.library_id, replica_id, now)

    # global ack (docs/protocol.md, "The global ack": one monotonic value per library)

    def _global_ack(self, tx: Transaction, library_id: str, now: float) -> str | None:
        """The published global ack, after computing it anew (``global_ack``)."""
        computed = tx.min_acked_logical_time(
            library_id, self._truancy_cutoff(now), _GLOBAL_ACK_TYPES
        )
        state = tx.global_ack_state(library_id)
        advanced = advance_global_ack(
            state, computed, _ms(now), _ms(self.settings.global_ack_delay_seconds)
        )
        if advanced != state:
            tx.set_global_ack_state(library_id, advanced)
        return advanced.published

    def _global_ack_changes(
        self, tx: Transaction, library_id: str, previous: str | None, now: float
    ) -> list[Envelope]:
        current = self._global_ack(tx, library_id, now)
        if current is None or current == previous:
            return []
        return [Broadcast({"type": "global-ack", "timestamp": current}, include_sender=True)]

    def global_ack_waiting(self, library_id: str) -> bool:
        """Whether a computed global ack waits to be published (``global_ack``)."""
        with self.database.read() as tx:
            return bool(tx.global_ack_state(library_id).waiting)

    def release_global_ack(self, library_id: str) -> tuple[list[Envelope], bool]:
        """Publish a global ack that has waited long enough; whether another still waits.

        Called a moment after writes, so the last value of a burst goes out even when no
        message follows it.
        """
        now = self._clock()
        with self.database.write() as tx:
            previous = tx.stored_global_ack(library_id)
            envelopes = self._global_ack_changes(tx, library_id, previous, now)
            return envelopes, bool(tx.global_ack_state(library_id).waiting)

    def _truancy_cutoff(self, now: float) -> int:
        return _ms(now - self.settings.replica_truancy_minutes * 60)

    # administration

    def library_info(self, library_id: str) -> dict[str, Any]:
        now = self._clock()
        cutoff = self._truancy_cutoff(now)
        with self.database.read() as tx:
            replicas = tx.list_replicas(library_id)
            info: dict[str, Any] = {
                "replicas": [
                    {
                        "id": r.replica_id,
                        "userId": r.user_id,
                        "type": int(r.type),
                        "ackedLogicalTime": r.acked_logical_time,
                        "ackedServerOrder": r.acked_server_order,
                        "truant": r.last_seen_ms is not None and r.last_seen_ms < cutoff,
                        "profile": self.profiles.get(r.user_id),
                    }
                    for r in replicas
                ],
                "latestServerOrder": tx.last_server_order(library_id),
                "operationsCount": tx.count_operations(library_id),
                "baselinesCount": tx.count_baselines(library_id),
                "globalAck": tx.stored_global_ack(library_id),
                "quarantined": tx.quarantined(library_id),
            }
        return info

    def compact_library(self, library_id: str, batch_size: int) -> CompactionResult:
        """One compaction pass, in one transaction (see ``compaction``)."""
        now = self._clock()
        with self.database.write() as tx:
            return compact(
                tx,
                library_id,
                tx.stored_global_ack(library_id),
                tx.min_acked_server_order(library_id, self._truancy_cutoff(now)),
                batch_size,
                _ms(now),
            )

    def document_snapshot(self, library_id: str, oid: str, describe_file: FileDescriber) -> Any:
        with self.database.read() as tx:
            return hydrate(tx, library_id, oid, describe_file)

    def evict_library(self, library_id: str) -> None:
        with self.database.write() as tx:
            tx.delete_library(library_id)
        self.presence.clear(library_id)

    def evict_user(self, library_id: str, user_id: str) -> int:
        with self.database.write() as tx:
            return tx.delete_user_replicas(library_id, user_id)


def _refuse_others(sender: TokenInfo, owners: dict[str, str]) -> None:
    for replica_id, user_id in owners.items():
        if user_id != sender.user_id:
            raise VerdantError(
                ErrorCode.FORBIDDEN, f"Replica {replica_id!r} belongs to another user"
            )


def _file_references(operations: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """``(fileId, authz)`` of each file ref the operations hold (inline in a patch's value or
    values, or one level down in an initialized object or list)."""
    references: list[tuple[str, str | None]] = []
    for operation in operations:
        data = operation["data"]
        more = data.get("values")
        values = [data.get("value"), *(more if isinstance(more, list) else [])]
        for value in list(values):
            if isinstance(value, dict) and not is_parsed_file_ref(value):
                values.extend(value.values())
            elif isinstance(value, list):
                values.extend(value)
        references.extend(
            (value["id"], operation.get("authz"))
            for value in values
            if is_parsed_file_ref(value) and isinstance(value.get("id"), str)
        )
    return references


def _omit_none(message: dict[str, Any]) -> dict[str, Any]:
    """Absent optional fields are omitted, never sent as null (docs/protocol.md, "Messages")."""
    return {key: value for key, value in message.items() if value is not None}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _warn_if_older_than_global_ack(
    tx: Transaction, library_id: str, replica_id: str, inserted: list[dict[str, Any]]
) -> None:
    """Say so when an operation arrives below the global ack already sent.

    The global ack waits so that this does not happen; an author stalled for longer than the
    wait still causes it, and store 3.x replicas that already folded past the operation drop it
    at their next fold (docs/protocol.md, "The global ack").
    """
    global_ack = tx.stored_global_ack(library_id)
    oldest = min(operation["timestamp"] for operation in inserted)
    if global_ack is not None and oldest < global_ack:
        logger.warning(
            "Library %s: replica %s sent an operation older than the global ack (%s < %s); "
            "replicas that already compacted past it may drop it",
            library_id,
            replica_id,
            oldest,
            global_ack,
        )
