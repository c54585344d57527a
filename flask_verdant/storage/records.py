"""Rows as typed values, so the protocol core never handles sqlite tuples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..tokens import ReplicaType


@dataclass(frozen=True)
class ReplicaRecord:
    library_id: str
    replica_id: str
    user_id: str
    type: ReplicaType
    acked_logical_time: str | None
    acked_server_order: int
    last_seen_ms: int | None
    last_sync_timestamp: str | None = None
    awaiting_history: bool = False


@dataclass(frozen=True)
class OperationRow:
    server_order: int
    replica_id: str
    oid: str
    timestamp: str
    data: Any

    def to_message(self) -> dict[str, Any]:
        return {"oid": self.oid, "timestamp": self.timestamp, "data": self.data}


@dataclass(frozen=True)
class BaselineRow:
    oid: str
    snapshot: Any
    timestamp: str

    def to_message(self) -> dict[str, Any]:
        return {"oid": self.oid, "snapshot": self.snapshot, "timestamp": self.timestamp}
