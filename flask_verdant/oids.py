"""Object identifiers (OIDs) of Verdant entities (docs/protocol.md, "Object ids").

The server treats OIDs as opaque keys; it builds one only for document
snapshots and rewrites legacy ones in the v5 storage migration. The helpers
follow ``@verdant-web/common`` to the character, ambiguities included (``&``
is not escaped, so a literal ``&dot;`` in an id does not survive a round trip).
"""

from __future__ import annotations

import re
import uuid
from typing import Final, NamedTuple

__all__ = [
    "LEGACY_OID_KEY",
    "OID_KEY",
    "DecomposedOid",
    "are_oids_related",
    "convert_legacy_oid",
    "create_oid",
    "create_oid_sub_id",
    "create_sub_oid",
    "decompose_oid",
    "get_legacy_dot_oid_sub_id_range",
    "get_oid_root",
    "get_oid_sub_id_range",
    "is_legacy_dot_oid",
    "is_root_oid",
    "replace_legacy_oids_in_json_string",
    "sanitize_fragment",
    "unsanitize_fragment",
]

#: Property names clients use to tag in-memory copies; never in stored patches.
OID_KEY: Final = "@@id"
LEGACY_OID_KEY: Final = "__@@oid_do_not_use"

_COLLECTION_SEPARATOR: Final = "/"
_SUB_ID_SEPARATOR: Final = ":"
_LEGACY_PATH_SEPARATOR: Final = "."
_PLACEHOLDERS: Final = (("/", "&slash;"), (":", "&colon;"), (".", "&dot;"))


class DecomposedOid(NamedTuple):
    """The parts of an OID; ``sub_id`` is ``None`` for a root (document) OID."""

    collection: str
    id: str
    sub_id: str | None


def sanitize_fragment(fragment: str) -> str:
    """Replace the separator characters ``/``, ``:``, ``.`` with placeholders."""
    for char, placeholder in _PLACEHOLDERS:
        fragment = fragment.replace(char, placeholder)
    return fragment


def unsanitize_fragment(fragment: str) -> str:
    """Undo :func:`sanitize_fragment` (placeholders in the same order)."""
    for char, placeholder in _PLACEHOLDERS:
        fragment = fragment.replace(placeholder, char)
    return fragment


def create_oid(collection: str, document_id: str, sub_id: str | None = None) -> str:
    """``collection/documentId``, plus ``:subId`` when ``sub_id`` is non-empty."""
    oid = sanitize_fragment(collection) + _COLLECTION_SEPARATOR + sanitize_fragment(document_id)
    if sub_id:
        oid += _SUB_ID_SEPARATOR + sub_id
    return oid


def create_oid_sub_id() -> str:
    """A fresh sub-id: the first 8 characters of a random UUID v4."""
    return str(uuid.uuid4())[:8]


def decompose_oid(oid: str) -> DecomposedOid:
    """Split an OID into collection, document id and sub-id.

    Pieces after a second ``:`` are ignored, extra ``/`` stay in the id, and
    for a legacy dotted OID the id is cut at the first ``.``. JavaScript throws
    ``TypeError`` for an OID without ``/``; this raises ``ValueError``.
    """
    core, *rest = oid.split(_SUB_ID_SEPARATOR)
    sub_id = rest[0] if rest else None
    collection, *id_parts = core.split(_COLLECTION_SEPARATOR)
    if not id_parts:
        raise ValueError(f"not an OID (no {_COLLECTION_SEPARATOR!r}): {oid!r}")
    document_id = _COLLECTION_SEPARATOR.join(id_parts).split(_LEGACY_PATH_SEPARATOR)[0]
    return DecomposedOid(unsanitize_fragment(collection), unsanitize_fragment(document_id), sub_id)


def create_sub_oid(root: str, sub_id: str | None = None) -> str:
    """An OID for a new sub-object of the document ``root`` (random sub-id by default)."""
    parts = decompose_oid(root)
    return create_oid(parts.collection, parts.id, create_oid_sub_id() if sub_id is None else sub_id)


def get_oid_root(oid: str) -> str:
    """The document (root) OID: the text before the first ``.``, then before ``:``."""
    return oid.split(_LEGACY_PATH_SEPARATOR)[0].split(_SUB_ID_SEPARATOR)[0]


def is_root_oid(oid: str) -> bool:
    """A document OID has no ``:``."""
    return _SUB_ID_SEPARATOR not in oid


def are_oids_related(oid_a: str, oid_b: str) -> bool:
    """Two OIDs belong to the same document when their roots are equal."""
    return get_oid_root(oid_a) == get_oid_root(oid_b)


def get_oid_sub_id_range(oid: str) -> tuple[str, str]:
    """Inclusive key range of all sub-object OIDs of ``oid``'s document."""
    root = get_oid_root(oid)
    return root + _SUB_ID_SEPARATOR, create_sub_oid(root, "\uffff")


def get_legacy_dot_oid_sub_id_range(oid: str) -> tuple[str, str]:
    """The same range for legacy dotted sub-object OIDs."""
    root = get_oid_root(oid)
    return root + _LEGACY_PATH_SEPARATOR, root + _LEGACY_PATH_SEPARATOR + "\uffff"


def is_legacy_dot_oid(oid: str) -> bool:
    """Legacy OIDs (``coll/doc.key.path:random``) have a ``.`` before the first ``:``."""
    return _LEGACY_PATH_SEPARATOR in oid.split(_SUB_ID_SEPARATOR)[0]


def convert_legacy_oid(oid: str) -> str:
    """Rebuild a legacy dotted OID in the modern form ``coll/doc:random``."""
    parts = decompose_oid(oid)
    return create_oid(parts.collection, parts.id, parts.sub_id)


# The client's pattern, spelled with JS classes: ``\w`` is ASCII, ``\S`` excludes
# JS white space (which is not Python's). It runs on JSON text, so ``[^"]`` stops
# at any quote, escaped or not, exactly like the original.
_JS_SPACE: Final = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_LEGACY_OID_JSON_STRING: Final = re.compile(rf'"[A-Za-z0-9_]+/[^"]+?(\.[^"]+)+:[^{_JS_SPACE}]+?"')


def replace_legacy_oids_in_json_string(text: str) -> str:
    """The v5 storage migration: convert every JSON string literal that looks
    like a legacy OID. User strings of that shape are rewritten too."""
    return _LEGACY_OID_JSON_STRING.sub(lambda m: f'"{convert_legacy_oid(m[0][1:-1])}"', text)
