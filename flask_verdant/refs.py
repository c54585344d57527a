"""Object and file references inside normalized snapshots (docs/protocol.md, "References").

A normalized snapshot replaces every nested object by ``{"@@type": "ref",
"id": <oid>}`` and keeps files as ``{"@@type": "file", "id": <fileId>}``.
The predicates copy the JavaScript ones, truthiness and strict equality
included, because ``applyPatch`` decides what to report as deleted with them.
"""

from __future__ import annotations

from typing import Final

from .jsvalue import JSArray, JSValue, read_property, strict_equals

__all__ = [
    "FILE_REF_TYPE",
    "OBJECT_REF_TYPE",
    "REF_TYPE_KEY",
    "compare_refs",
    "is_file_ref",
    "is_object_ref",
    "is_parsed_file_ref",
    "is_ref",
    "make_file_ref",
    "make_object_ref",
]

REF_TYPE_KEY: Final = "@@type"
OBJECT_REF_TYPE: Final = "ref"
FILE_REF_TYPE: Final = "file"


def make_object_ref(oid: str) -> dict[str, JSValue]:
    """A ref to the entity ``oid``, as a parent holds it."""
    return {REF_TYPE_KEY: OBJECT_REF_TYPE, "id": oid}


def make_file_ref(file_id: str) -> dict[str, JSValue]:
    """A ref to an uploaded file; ``file_id`` is the id used by the file endpoints."""
    return {REF_TYPE_KEY: FILE_REF_TYPE, "id": file_id}


def _has_type(value: JSValue, ref_type: str) -> bool:
    # Only objects can carry "@@type": strings, numbers and booleans read it as undefined.
    if not isinstance(value, (dict, JSArray)):
        return False
    return strict_equals(read_property(value, REF_TYPE_KEY), ref_type)


def is_object_ref(value: JSValue) -> bool:
    """``isObjectRef``: an object whose ``@@type`` is exactly the string ``"ref"``."""
    return _has_type(value, OBJECT_REF_TYPE)


def is_file_ref(value: JSValue) -> bool:
    """``isFileRef``: an object whose ``@@type`` is exactly the string ``"file"``."""
    return _has_type(value, FILE_REF_TYPE)


def is_parsed_file_ref(value: object) -> bool:
    """``is_file_ref`` for a value just parsed from JSON (dicts, lists and primitives only),
    without the general JS value model: intake checks every value of every stored operation."""
    if type(value) is not dict:
        return False
    ref_type = value.get(REF_TYPE_KEY)
    return type(ref_type) is str and ref_type == FILE_REF_TYPE


def is_ref(value: JSValue) -> bool:
    """``isRef``: an object ref or a file ref."""
    return is_object_ref(value) or is_file_ref(value)


def compare_refs(a: JSValue, b: JSValue) -> bool:
    """``compareRefs``: identical values, or refs of one type with ``===`` ids.

    The identity test comes first, so two equal primitives (or two
    ``undefined``) also "match"; ``list-move-by-ref`` depends on that.
    """
    if strict_equals(a, b):
        return True
    if not (is_ref(a) and is_ref(b)):
        return False
    return strict_equals(read_property(a, REF_TYPE_KEY), read_property(b, REF_TYPE_KEY)) and (
        strict_equals(read_property(a, "id"), read_property(b, "id"))
    )
