"""Rows as typed values, so the protocol core never handles sqlite tuples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import json_codec
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
    patch_model: str = "common2"


class OperationRow(NamedTuple):
    """An operation as stored, its patch still JSON text.

    Compaction reads thousands of rows: a tuple made straight from the sqlite row is the cheapest
    to build, and a patch is parsed only when it is applied.
    """

    server_order: int
    replica_id: str
    oid: str
    timestamp: str
    data_json: str
    authz: str | None
    patch_model: str

    @property
    def data(self) -> Any:
        """The patch as a value, parsed at each access (compaction reads it once)."""
        return json_codec.loads(self.data_json)


class BaselineRow(NamedTuple):
    """A baseline as stored, its snapshot still JSON text (like ``OperationRow``)."""

    oid: str
    snapshot_json: str | None
    timestamp: str
    authz: str | None = None
    # The highest server order folded into it; None when not known.
    folded_server_order: int | None = None

    @property
    def snapshot(self) -> Any:
        return None if self.snapshot_json is None else json_codec.loads(self.snapshot_json)


class OperationsJSON(NamedTuple):
    """Operations as the JSON array a sync answer holds, and the last server order in it.

    sqlite builds the array, so an answer that holds a library's whole history costs no Python
    object per operation (BENCHMARKS.md). ``last_server_order`` is 0 when there are none.
    """

    array: json_codec.RawJSON
    last_server_order: int
