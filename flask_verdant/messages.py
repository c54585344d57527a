"""Client messages as typed values, validated before anything touches storage.

Validation happens up front for a whole request so that malformed input is refused before any
message of it has been applied, and covers values as well as shape (``validation``): what is
accepted can always be stored and encoded again. Operations and baselines keep the exact dicts
the client sent, because ``op-re`` must relay them unchanged (docs/protocol.md, "Messages").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import authz
from .errors import bad_request
from .nonce import decode_nonce
from .validation import DEFAULT_LIMITS, Limits, check_id, check_value

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class SyncMessage:
    replica_id: str
    timestamp: str
    operations: list[JSONDict]
    baselines: list[JSONDict]
    since: str | None
    since_is_null: bool
    resync_all: bool


@dataclass(frozen=True)
class OpMessage:
    replica_id: str
    timestamp: str
    operations: list[JSONDict]


@dataclass(frozen=True)
class AckMessage:
    replica_id: str
    timestamp: str | None
    nonce_server_order: int | None


@dataclass(frozen=True)
class HeartbeatMessage:
    replica_id: str | None


@dataclass(frozen=True)
class PresenceUpdateMessage:
    """A replica's presence; store 5.x clients may leave ``presence`` out and add ``internal``.

    ``changes`` holds the fields the message carries (``presence``, ``internal``): they are
    merged over the replica's previous entry, the others keep their values. Store 5.x clients
    always send ``internal``, which is how the server tells their replicas apart
    (docs/protocol.md, "Store 5.x").
    """

    replica_id: str
    changes: dict[str, Any]

    @property
    def presence(self) -> Any:
        return self.changes.get("presence")

    @property
    def has_internal(self) -> bool:
        return "internal" in self.changes


@dataclass(frozen=True)
class DisconnectingMessage:
    """Store 5.x says so before it closes its socket on purpose: its replica leaves at once."""

    replica_id: str


@dataclass(frozen=True)
class IgnoredMessage:
    """A deprecated type (``sync-ack``) that no 3.x client sends; accepted and dropped."""

    replica_id: str | None


ClientMessage = (
    SyncMessage
    | OpMessage
    | AckMessage
    | HeartbeatMessage
    | PresenceUpdateMessage
    | DisconnectingMessage
    | IgnoredMessage
)

_PRESENCE_FIELDS = ("presence", "internal")


def parse_message(raw: object, limits: Limits = DEFAULT_LIMITS) -> ClientMessage:
    """Turn one decoded JSON value into a message, or raise a 4000 error naming the problem.

    An ``InvalidValue`` (a kind of 4000) says the shape was fine but a value was not.
    """
    if not isinstance(raw, dict):
        raise bad_request("Each message must be a JSON object")
    check_value(raw, limits)
    message = _parse(raw)
    for key in ("replicaId", "timestamp", "since", "nonce"):
        value = raw.get(key)
        if isinstance(value, str):
            check_id(value, key, limits)
    records = getattr(message, "operations", []) + getattr(message, "baselines", [])
    for record in records:
        check_id(record["oid"], "oid", limits)
        check_id(record["timestamp"], "timestamp", limits)
    return message


def parse_messages(raw: object, limits: Limits = DEFAULT_LIMITS) -> list[ClientMessage]:
    if not isinstance(raw, list):
        raise bad_request("'messages' must be a list")
    return [parse_message(item, limits) for item in raw]


def _parse(raw: JSONDict) -> ClientMessage:
    kind = raw.get("type")
    if kind == "sync":
        return _parse_sync(raw)
    if kind == "op":
        return OpMessage(
            replica_id=_string(raw, "replicaId"),
            timestamp=_string(raw, "timestamp"),
            operations=_operations(raw, "operations"),
        )
    if kind == "ack":
        return AckMessage(
            replica_id=_string(raw, "replicaId"),
            timestamp=_optional_string(raw, "timestamp"),
            nonce_server_order=_nonce(raw),
        )
    if kind == "heartbeat":
        return HeartbeatMessage(replica_id=_optional_string(raw, "replicaId"))
    if kind == "presence-update":
        return PresenceUpdateMessage(
            replica_id=_string(raw, "replicaId"),
            changes={key: raw[key] for key in _PRESENCE_FIELDS if key in raw},
        )
    if kind == "disconnecting":
        return DisconnectingMessage(replica_id=_string(raw, "replicaId"))
    if kind == "sync-ack":
        return IgnoredMessage(replica_id=_optional_string(raw, "replicaId"))
    if not isinstance(kind, str):
        raise bad_request("A message needs a string 'type'")
    raise bad_request(f"Unknown message type {kind[:64]!r}")


def _parse_sync(raw: JSONDict) -> SyncMessage:
    since = raw.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_request("'since' must be a string or null")
    resync_all = raw.get("resyncAll", False)
    if not isinstance(resync_all, bool):
        raise bad_request("'resyncAll' must be a boolean")
    return SyncMessage(
        replica_id=_string(raw, "replicaId"),
        timestamp=_string(raw, "timestamp"),
        operations=_operations(raw, "operations"),
        baselines=_records(raw, "baselines"),
        since=since,
        # A missing `since` claims history, as the reference server treats it.
        since_is_null="since" in raw and since is None,
        resync_all=resync_all,
    )


def _string(raw: JSONDict, key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{key}' must be a non-empty string")
    return value


def _optional_string(raw: JSONDict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be a string")
    return value or None


def _nonce(raw: JSONDict) -> int | None:
    nonce = _optional_string(raw, "nonce")
    return None if nonce is None else decode_nonce(nonce)


def _list(raw: JSONDict, key: str) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list):
        raise bad_request(f"'{key}' must be a list")
    return value


def _operations(raw: JSONDict, key: str) -> list[JSONDict]:
    operations = _records(raw, key)
    for index, operation in enumerate(operations):
        data = operation.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise bad_request(f"{key}[{index}].data must be a patch object with a string 'op'")
    return operations


def _records(raw: JSONDict, key: str) -> list[JSONDict]:
    """A list of objects that each name an ``oid`` and a ``timestamp``."""
    records = _list(raw, key)
    for index, record in enumerate(records):
        where = f"{key}[{index}]"
        if not isinstance(record, dict):
            raise bad_request(f"{where} must be an object")
        _check_string(record, "oid", where)
        _check_string(record, "timestamp", where)
        if record.get("authz") is not None:
            try:
                authz.check(record["authz"])
            except authz.InvalidKey as error:
                raise bad_request(f"{where}: {error}") from error
    return records


def _check_string(item: JSONDict, key: str, where: str) -> None:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}.{key} must be a non-empty string")
