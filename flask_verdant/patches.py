"""Applying Verdant operation patches to normalized snapshots (docs/protocol.md, "Patches").

This reproduces ``applyPatch``/``applyOperations`` of ``@verdant-web/common``,
quirks included, because clients fold the same operations themselves and the
server's compacted baselines must agree with them. Two models exist, because
store 3.x clients (common 2.2.0 and 2.3.1) and store 5.x clients (common
3.2.2) fold differently and may share a library: :data:`COMMON_2` and
:data:`COMMON_3` differ only in ``list-set`` (unknown to common 2) and in how
``list-remove`` finds a ref (docs/protocol.md, "Store 5.x"). Values
use the model of :mod:`flask_verdant.jsvalue` (``UNDEFINED``, ``HOLE``,
``JSArray``); patch fields may hold any JSON, and are converted the way JS
converts them (``"1"`` is a fine index, ``null`` is index 0).

Like the original, :func:`apply_patch` mutates ``base`` and returns the new
base; always use the return value (a plain ``list`` that gains a named
property, and every ``initialize``/``delete``, returns a different object).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

from .jsvalue import (
    HOLE,
    MAX_DENSE_ARRAY_LENGTH,
    UNDEFINED,
    JSArray,
    JSError,
    JSRangeError,
    JSTypeError,
    JSValue,
    PatchError,
    Sentinel,
    UnemulatedError,
    array_index,
    is_truthy,
    js_stringify,
    own_keys,
    read_property,
    strict_equals,
    to_integer_or_infinity,
    to_number,
    to_property_key,
    to_string,
    to_uint32,
)
from .refs import compare_refs, is_object_ref, is_ref

__all__ = [
    "COMMON_2",
    "COMMON_3",
    "HOLE",
    "UNDEFINED",
    "InvalidListInsertError",
    "JSError",
    "JSRangeError",
    "JSTypeError",
    "PatchError",
    "PatchModel",
    "patch_model_named",
    "UnemulatedError",
    "UnsupportedOperationError",
    "apply_operations",
    "apply_patch",
    "clone_deep",
]

_PROTO: Final = "__proto__"

PatchModel = Literal["common2", "common3"]
COMMON_2: Final[PatchModel] = "common2"
"""``@verdant-web/common`` 2.2.0 and 2.3.1, used by store 3.x clients."""
COMMON_3: Final[PatchModel] = "common3"
"""``@verdant-web/common`` 3.2.2, used by store 5.x clients."""


def patch_model_named(name: str) -> PatchModel:
    """The model a stored name stands for; anything unknown folds like store 3.x."""
    return COMMON_3 if name == COMMON_3 else COMMON_2


class UnsupportedOperationError(JSError):
    """Unknown ``op`` (``list-set`` included, in the common 2 model): JS ``Error``."""


class InvalidListInsertError(JSError):
    """``list-insert`` whose ``value`` and ``values`` are both falsy: JS ``Error``."""


def _field(record: JSValue, name: str) -> JSValue:
    """``record[name]`` for a patch or operation; JS throws on null/undefined."""
    if record is None or isinstance(record, Sentinel):
        kind = "null" if record is None else "undefined"
        raise JSTypeError(f"Cannot read properties of {kind} (reading '{name}')")
    if isinstance(record, dict):
        return record.get(name, UNDEFINED)
    return UNDEFINED  # strings, numbers and arrays have no patch fields


def _unread(value: JSValue) -> JSValue:
    """Reading a hole gives ``undefined``."""
    return UNDEFINED if value is HOLE else value


def _describe(value: JSValue) -> str:
    """How V8 names a primitive in its TypeError messages."""
    kind = (
        "string" if isinstance(value, str) else "boolean" if isinstance(value, bool) else "number"
    )
    return f"{kind} '{to_string(value)}'"


def _refuse_prototype(value: JSValue) -> None:
    """Assigning through the inherited ``__proto__`` setter.

    Non-object values are ignored by the setter, exactly as here; an object or
    ``null`` would replace the prototype, which this model does not track.
    """
    if value is None or isinstance(value, (dict, list)):
        raise UnemulatedError("assigning an object or null to __proto__ changes a prototype")


def _grow(array: list[JSValue], length: int) -> None:
    if length > MAX_DENSE_ARRAY_LENGTH:
        raise UnemulatedError(f"an array of length {length} is too sparse to model densely")
    array.extend([HOLE] * (length - len(array)))


def _set_property(base: JSValue, key: str, value: JSValue) -> JSValue:
    """Strict-mode ``base[key] = value``; returns the base (maybe upgraded to JSArray)."""
    if isinstance(base, dict):
        if key == _PROTO and key not in base:
            _refuse_prototype(value)
        else:
            base[key] = value
        return base
    if isinstance(base, list):
        index = array_index(key)
        if index is not None:
            if index >= len(base):
                _grow(base, index)
                base.append(value)
            else:
                base[index] = value
        elif key == "length":
            length = to_uint32(value)
            if length != to_number(value):
                raise JSRangeError("Invalid array length")
            if length < len(base):
                del base[length:]
            else:
                _grow(base, length)
        elif key == _PROTO:
            _refuse_prototype(value)
        else:
            if not isinstance(base, JSArray):
                base = JSArray(base)
            base.props[key] = value
        return base
    if key == _PROTO:
        return base  # the setter ignores primitive receivers
    index = array_index(key)
    if isinstance(base, str) and (key == "length" or (index is not None and index < len(base))):
        raise JSTypeError(f"Cannot assign to read only property '{key}' of {_describe(base)}")
    raise JSTypeError(f"Cannot create property '{key}' on {_describe(base)}")


def _delete_property(base: JSValue, key: str) -> JSValue:
    """Strict-mode ``delete base[key]``: arrays keep a hole, fixed slots throw."""
    if isinstance(base, dict):
        base.pop(key, None)
    elif isinstance(base, list):
        index = array_index(key)
        if index is not None:
            if index < len(base):
                base[index] = HOLE
        elif key == "length":
            raise JSTypeError("Cannot delete property 'length' of [object Array]")
        elif isinstance(base, JSArray):
            base.props.pop(key, None)
    elif isinstance(base, str):
        index = array_index(key)
        if key == "length" or (index is not None and index < len(base)):
            raise JSTypeError(f"Cannot delete property '{key}' of [object String]")
    return base


def _method(base: list[JSValue], name: str) -> None:
    """Calling ``base.<name>(...)``: a property set on the array shadows the method."""
    if isinstance(base, JSArray) and name in base.props:
        raise JSTypeError(f"base.{name} is not a function")


def _splice(
    array: list[JSValue], start: JSValue, count: JSValue, items: list[JSValue]
) -> list[JSValue]:
    """``base.splice(start, count, ...items)`` with both arguments passed.

    Holes shift as holes. The result array is made through
    ``ArraySpeciesCreate``, so a ``constructor`` property set on the array to a
    primitive or ``null`` makes every splice throw (after the conversions).
    """
    _method(array, "splice")
    length = len(array)
    relative = to_integer_or_infinity(start)
    begin = int(max(length + relative, 0) if relative < 0 else min(relative, length))
    removed = int(min(max(to_integer_or_infinity(count), 0), length - begin))
    if isinstance(array, JSArray):
        constructor = array.props.get("constructor", UNDEFINED)
        if constructor is not UNDEFINED and not isinstance(constructor, (dict, list)):
            raise JSTypeError("object.constructor[Symbol.species] is not a constructor")
    taken = array[begin : begin + removed]
    array[begin : begin + removed] = items
    return taken


def _spread(values: JSValue) -> list[JSValue]:
    """``...values``: arrays (holes read as undefined) and strings are iterable."""
    if isinstance(values, list):
        return [_unread(item) for item in values]
    if isinstance(values, str):
        return list(values)
    raise JSTypeError("Spread syntax requires ...iterable[Symbol.iterator] to be a function")


def _read_id(item: JSValue) -> JSValue:
    """``item.id`` inside ``list-remove``'s search, which throws on null/undefined."""
    if item is None or isinstance(item, Sentinel):
        kind = "null" if item is None else "undefined"
        raise JSTypeError(f"Cannot read properties of {kind} (reading 'id')")
    return read_property(item, "id")


def _find_removal(array: list[JSValue], value: JSValue, last: bool, model: PatchModel) -> int:
    """The index ``list-remove`` removes next, or -1."""
    positions: Iterable[int] = range(len(array) - 1, -1, -1) if last else range(len(array))
    if model == COMMON_3 and is_ref(value):
        # any ref, compared by type and id; other items (holes, null) simply do not match
        if not last:
            _method(array, "findIndex")
        for position in positions:
            item = _unread(array[position])
            if is_ref(item) and compare_refs(item, value):
                return position
        return -1
    if model == COMMON_2 and is_object_ref(value):
        # findIndex / the custom findLastIndex visit holes as undefined.
        if not last:
            _method(array, "findIndex")
        target = read_property(value, "id")
        for position in positions:
            if strict_equals(_read_id(_unread(array[position])), target):
                return position
        return -1
    # indexOf / lastIndexOf skip holes and use ===.
    _method(array, "lastIndexOf" if last else "indexOf")
    for position in positions:
        item = array[position]
        if item is not HOLE and strict_equals(item, value):
            return position
    return -1


def clone_deep(value: JSValue) -> JSValue:
    """``cloneDeep`` as ``initialize`` uses it: holes stay holes, array
    properties are lost, and a ``__proto__`` key goes through the setter."""
    if isinstance(value, list):
        return [item if item is HOLE else clone_deep(item) for item in value]
    if isinstance(value, dict):
        clone: dict[str, JSValue] = {}
        for key in own_keys(value):
            copy = clone_deep(value[key])
            if key == _PROTO:
                _refuse_prototype(copy)
            else:
                clone[key] = copy
        return clone
    return value


def apply_patch(
    base: JSValue,
    patch: JSValue,
    deleted_refs: list[JSValue] | None = None,
    model: PatchModel = COMMON_2,
) -> JSValue:
    """Apply one patch the way ``applyPatch`` of ``model`` does and return the new base.

    Refs that the patch overwrites or removes are appended to ``deleted_refs``
    when it is given. Raises a :class:`PatchError` subclass wherever JS throws
    (``js_name`` tells which JS class), leaving ``base`` as far as JS would
    have mutated it. A list op on a non-list is a silent no-op, as in JS.
    """
    try:
        return _apply(base, patch, deleted_refs, model)
    except RecursionError:
        # V8 copes with far deeper nesting than Python's stack; refuse, don't crash
        raise UnemulatedError("value nested too deeply to apply in Python") from None


def _apply(
    base: JSValue, patch: JSValue, deleted_refs: list[JSValue] | None, model: PatchModel
) -> JSValue:
    def check_ref(value: JSValue) -> None:
        if deleted_refs is not None and is_ref(value):
            deleted_refs.append(value)

    op = _field(patch, "op")
    is_initialize = op == "initialize" and isinstance(op, str)
    if (base is None or isinstance(base, Sentinel)) and not is_initialize:
        return base  # deleted entities stay deleted until re-initialized

    if op == "set" and isinstance(op, str):
        key = to_property_key(_field(patch, "name"))
        check_ref(read_property(base, key))
        return _set_property(base, key, _field(patch, "value"))
    if op == "remove" and isinstance(op, str):
        key = to_property_key(_field(patch, "name"))
        check_ref(read_property(base, key))
        return _delete_property(base, key)
    if is_initialize:
        return clone_deep(_field(patch, "value"))
    if op == "delete" and isinstance(op, str):
        if isinstance(base, list):
            _method(base, "forEach")
            for item in base:
                if item is not HOLE:
                    check_ref(item)
        elif isinstance(base, dict):
            for key in own_keys(base):
                check_ref(base[key])
        return UNDEFINED
    if op == "touch" and isinstance(op, str):
        return base
    if not (isinstance(op, str) and (op in _LIST_OPS or (op == "list-set" and model == COMMON_3))):
        raise UnsupportedOperationError(f"Unsupported patch operation: {to_string(op)}")
    if not isinstance(base, list):
        return base  # JS logs "Cannot apply list patch" and moves on

    if op == "list-set":
        key = to_property_key(_field(patch, "index"))
        check_ref(read_property(base, key))
        return _set_property(base, key, _field(patch, "value"))
    if op == "list-push":
        _method(base, "push")
        base.append(_field(patch, "value"))
    elif op == "list-delete":
        index = _field(patch, "index")
        check_ref(read_property(base, to_property_key(index)))
        _splice(base, index, _field(patch, "count"), [])
    elif op == "list-move-by-index":
        taken = _splice(base, _field(patch, "from"), 1, [])
        _splice(base, _field(patch, "to"), 0, [_unread(taken[0]) if taken else UNDEFINED])
    elif op == "list-remove":
        value, only = _field(patch, "value"), _field(patch, "only")
        last = isinstance(only, str) and only == "last"
        while True:
            position = _find_removal(base, value, last, model)
            if position != -1:
                check_ref(_unread(base[position]))
                _splice(base, position, 1, [])
            if is_truthy(only) or position == -1:
                break
    elif op == "list-add":
        value = _field(patch, "value")
        value_is_ref = is_object_ref(value)
        _method(base, "some")
        for item in base:
            if item is HOLE:
                continue
            if value_is_ref and is_object_ref(item):
                if strict_equals(read_property(item, "id"), read_property(value, "id")):
                    break
            elif strict_equals(item, value):
                break
        else:
            _method(base, "push")
            base.append(value)
    elif op == "list-move-by-ref":
        value = _field(patch, "value")
        _method(base, "findIndex")
        position = next(
            (i for i, item in enumerate(base) if compare_refs(_unread(item), value)), -1
        )
        taken = _splice(base, position, 1, [])
        _splice(base, _field(patch, "index"), 0, [_unread(taken[0]) if taken else UNDEFINED])
    else:  # list-insert
        value, values = _field(patch, "value"), _field(patch, "values")
        if not is_truthy(value) and not is_truthy(values):
            raise InvalidListInsertError(
                "Cannot apply list insert patch; expected value or values, received "
                + (js_stringify(patch) or "undefined")
            )
        items = [value] if is_truthy(value) else _spread(values)
        _splice(base, _field(patch, "index"), 0, items)
    return base


_LIST_OPS: Final = frozenset(
    {
        "list-push",
        "list-delete",
        "list-move-by-index",
        "list-remove",
        "list-add",
        "list-move-by-ref",
        "list-insert",
    }
)


def apply_operations(
    base: JSValue,
    operations: Iterable[JSValue],
    deleted_refs: list[JSValue] | None = None,
    model: PatchModel = COMMON_2,
) -> JSValue:
    """Fold :func:`apply_patch` over each operation's ``data``, in the order given.

    Like ``applyOperations`` it never sorts; ``deleted_refs`` accumulates
    across all operations. Returns :data:`UNDEFINED` for a deleted entity.
    """
    current = base
    for operation in operations:
        current = apply_patch(current, _field(operation, "data"), deleted_refs, model)
    return current
