"""A document as the server currently knows it, hydrated for the host app (README: Public API).

The baseline plus every remaining operation, nested objects resolved through their refs and
files described by the host's storage. Unlike the reference, a document's sub-objects are each
visited once (a ref cycle cannot loop forever) and an operation that cannot be applied is
skipped rather than failing the whole read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .jsvalue import UNDEFINED, JSValue, PatchError, to_json_compatible
from .patches import apply_patch, patch_model_named
from .refs import is_file_ref, is_object_ref
from .storage import Transaction

logger = logging.getLogger("flask_verdant")

FileDescriber = Callable[[str], Any]


def hydrate(tx: Transaction, library_id: str, oid: str, describe_file: FileDescriber) -> Any:
    """The JSON value of ``oid`` with refs resolved, or None when it does not exist."""
    return _hydrate(tx, library_id, oid, describe_file, set())


def _hydrate(
    tx: Transaction, library_id: str, oid: str, describe_file: FileDescriber, seen: set[str]
) -> Any:
    if oid in seen:
        return None
    seen.add(oid)
    snapshot = current_snapshot(tx, library_id, oid)
    if snapshot is UNDEFINED:
        return None
    plain = to_json_compatible(snapshot)

    def resolve(value: Any) -> Any:
        if is_object_ref(value):
            return _hydrate(tx, library_id, str(value["id"]), describe_file, seen)
        if is_file_ref(value):
            return describe_file(str(value["id"]))
        return value

    if isinstance(plain, list):
        return [resolve(item) for item in plain]
    if isinstance(plain, dict):
        return {key: resolve(value) for key, value in plain.items()}
    return plain


def current_snapshot(tx: Transaction, library_id: str, oid: str) -> JSValue:
    """Baseline plus remaining operations in time order; UNDEFINED for a deleted entity."""
    baseline = tx.get_baseline(library_id, oid)
    snapshot: JSValue = UNDEFINED if baseline is None else baseline.snapshot
    for operation in tx.operations_of(library_id, oid):
        try:
            snapshot = apply_patch(
                snapshot, operation.data, model=patch_model_named(operation.patch_model)
            )
        except PatchError as error:
            logger.warning("Skipped operation %s of %s: %r", operation.timestamp, oid, error)
    return snapshot
