"""History compaction ("rebasing"): fold old operations into document baselines.

See docs/protocol.md, "Compaction".

An operation may be folded once every replica has it: its timestamp is before the library's
global ack and its server order is at most what every recently seen replica acknowledged (the
reference requires "below", which leaves the newest operation unfolded for no reason). The
reference's faults are fixed here: a document stops at its first operation that may not be
folded, whatever the reason; a missing baseline starts as deleted, not ``{}``; an operation
that cannot be applied quarantines its document instead of crashing; and a pass is one
transaction over a bounded batch, so a crash leaves history as it was.

Store 3.x and 5.x clients fold a few patches differently; each operation is applied with the
model of the client that wrote it (docs/protocol.md, "Store 5.x").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby

from .jsvalue import UNDEFINED, JSValue, to_json_compatible
from .patches import apply_patch, patch_model_named
from .refs import is_file_ref
from .storage import OperationRow, Transaction

logger = logging.getLogger("flask_verdant")

# With no replica recently seen, nobody can be missing anything.
_NOBODY_WAITING = 2**62


@dataclass
class CompactionResult:
    """What one pass did, for logs, the CLI and the scheduler."""

    library_id: str
    folded_operations: int = 0
    documents: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    dropped_file_ids: list[str] = field(default_factory=list)
    has_more: bool = False


def compact(
    tx: Transaction,
    library_id: str,
    global_ack: str | None,
    received_by_all: int | None,
    batch_size: int,
    now_ms: int,
) -> CompactionResult:
    """Fold up to ``batch_size`` foldable operations of one library, inside ``tx``."""
    result = CompactionResult(library_id)
    if not global_ack:
        return result
    limit = _NOBODY_WAITING if received_by_all is None else received_by_all
    rows = tx.foldable_operations(library_id, global_ack, limit, batch_size + 1)
    result.has_more = len(rows) > batch_size
    for oid, group in groupby(rows[:batch_size], key=lambda row: row.oid):
        _fold_document(tx, library_id, oid, list(group), now_ms, result)
    return result


def _fold_document(
    tx: Transaction,
    library_id: str,
    oid: str,
    operations: list[OperationRow],
    now_ms: int,
    result: CompactionResult,
) -> None:
    baseline = tx.get_baseline(library_id, oid)
    snapshot: JSValue = UNDEFINED if baseline is None else baseline.snapshot
    # A private document stays private once folded: the key of its latest initialize, as
    # store 5.x's own rebase keeps it.
    key = None if baseline is None else baseline.authz
    dropped_refs: list[JSValue] = []
    for operation in operations:
        try:
            model = patch_model_named(operation.patch_model)
            data = operation.data
            snapshot = apply_patch(snapshot, data, dropped_refs, model)
            if isinstance(data, dict) and data.get("op") == "initialize":
                key = operation.authz
        except Exception as error:  # any failure of one document must not stop the others
            logger.error(
                "Quarantined %s in library %s: operation %s cannot be applied: %r",
                oid,
                library_id,
                operation.timestamp,
                error,
            )
            tx.quarantine(library_id, oid, operation.timestamp, repr(error), now_ms)
            result.quarantined.append(oid)
            return
    stored = to_stored_snapshot(snapshot)
    # Unknown stays unknown: a baseline from before schema 10 may fold any operation.
    newest = max(operation.server_order for operation in operations)
    folded: int | None = newest
    if baseline is not None:
        previous = baseline.folded_server_order
        folded = None if previous is None else max(previous, newest)
    if stored is None:
        tx.delete_baseline(library_id, oid)
    else:
        tx.replace_baseline(library_id, oid, stored, operations[-1].timestamp, key, folded)
    tx.delete_operations(library_id, [operation.server_order for operation in operations])
    result.folded_operations += len(operations)
    result.documents.append(oid)
    # A file the document still holds was perhaps dropped and brought back (an undo).
    held = _file_ids(_members(stored))
    dropped = set(_file_ids(dropped_refs)) - set(held)
    tx.mark_files_referenced(library_id, held)
    tx.mark_files_unreferenced(library_id, sorted(dropped), now_ms)
    result.dropped_file_ids.extend(sorted(dropped))


def _members(snapshot: JSValue) -> list[JSValue]:
    if isinstance(snapshot, dict):
        return list(snapshot.values())
    if isinstance(snapshot, list):
        return list(snapshot)
    return []


def _file_ids(values: Iterable[JSValue]) -> list[str]:
    """Ids of the file refs among ``values`` (snapshots hold file refs inline, one level)."""
    return [str(value["id"]) for value in values if is_file_ref(value) and isinstance(value, dict)]


def to_stored_snapshot(snapshot: JSValue) -> JSValue:
    """The JSON a baseline row holds, or None for a deleted entity (no row)."""
    if snapshot is UNDEFINED or snapshot is None:
        return None
    return to_json_compatible(snapshot)
