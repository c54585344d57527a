"""The patch model against known test vectors (docs/protocol.md, "Patches") and JS edge cases.

Expected values are ``JSON.stringify`` text as JavaScript prints it; the
differential suite in ``tests/differential`` checks the same against the npm
package itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_verdant.jsvalue import (
    HOLE,
    UNDEFINED,
    JSArray,
    js_stringify,
    number_to_string,
    to_json_compatible,
    to_number,
    to_property_key,
)
from flask_verdant.patches import (
    InvalidListInsertError,
    JSError,
    JSRangeError,
    JSTypeError,
    PatchError,
    UnemulatedError,
    UnsupportedOperationError,
    apply_operations,
    apply_patch,
)


def r(oid: str) -> dict[str, Any]:
    return {"@@type": "ref", "id": oid}


def f(file_id: str) -> dict[str, Any]:
    return {"@@type": "file", "id": file_id}


R = {x: json.dumps(r(x), separators=(",", ":")) for x in "abcxz"}
F = {x: json.dumps(f(x), separators=(",", ":")) for x in "aby"}


def run(base: Any, *patches: dict[str, Any]) -> tuple[str | None, str]:
    deleted: list[Any] = []
    result = apply_operations(base, [{"data": p} for p in patches], deleted)
    return js_stringify(result), js_stringify(deleted) or ""


SPEC_VECTORS: list[tuple[Any, list[dict[str, Any]], str | None, str]] = [
    ([f("a"), f("b")], [{"op": "list-remove", "value": f("a")}], f"[{F['a']},{F['b']}]", "[]"),
    ([r("a"), 1, r("a")], [{"op": "list-remove", "value": r("a")}], "[1]", f"[{R['a']},{R['a']}]"),
    ([1, 2, 1, 1], [{"op": "list-remove", "value": 1, "only": "first"}], "[2,1,1]", "[]"),
    ([1, 2, 1, 1], [{"op": "list-remove", "value": 1, "only": "last"}], "[1,2,1]", "[]"),
    ([1, 2, 1, 1], [{"op": "list-remove", "value": 1}], "[2]", "[]"),
    ([1, 2, 1, 1], [{"op": "list-remove", "value": 1, "only": "xyz"}], "[2,1,1]", "[]"),
    ([f("a")], [{"op": "list-add", "value": f("a")}], f"[{F['a']},{F['a']}]", "[]"),
    ([r("a")], [{"op": "list-add", "value": r("a")}], f"[{R['a']}]", "[]"),
    ([1], [{"op": "list-insert", "index": 1, "values": [2, 3]}], "[1,2,3]", "[]"),
    ([1], [{"op": "list-insert", "index": 0, "value": 9, "values": [2, 3]}], "[9,1]", "[]"),
    (
        [1],
        [{"op": "list-insert", "index": 0, "value": False, "values": [False]}],
        "[false,1]",
        "[]",
    ),
    ([1, 2, 3], [{"op": "list-insert", "index": -1, "value": 9}], "[1,2,9,3]", "[]"),
    (
        [r("a"), r("b"), r("c")],
        [{"op": "list-delete", "index": 0, "count": 2}],
        f"[{R['c']}]",
        f"[{R['a']}]",
    ),
    ([1, 2, 3], [{"op": "list-delete", "index": 0}], "[1,2,3]", "[]"),
    (
        [r("a"), r("b"), r("c")],
        [{"op": "list-move-by-ref", "value": r("z"), "index": 0}],
        f"[{R['c']},{R['a']},{R['b']}]",
        "[]",
    ),
    ([1, 2], [{"op": "list-move-by-index", "from": 5, "to": 0}], "[null,1,2]", "[]"),
    (UNDEFINED, [{"op": "set", "name": "a", "value": 1}], None, "[]"),
    (None, [{"op": "set", "name": "a", "value": 1}], "null", "[]"),
    (
        UNDEFINED,
        [
            {"op": "initialize", "value": {"a": 1}},
            {"op": "set", "name": "b", "value": r("x")},
            {"op": "set", "name": "b", "value": r("x")},
        ],
        f'{{"a":1,"b":{R["x"]}}}',
        f"[{R['x']}]",
    ),
    ({"a": r("x"), "b": f("y"), "c": 1}, [{"op": "delete"}], None, f"[{R['x']},{F['y']}]"),
    ({"a": 1}, [{"op": "list-push", "value": 1}], '{"a":1}', "[]"),
    ([1], [{"op": "set", "name": 3, "value": "z"}], '[1,null,null,"z"]', "[]"),
    ([1, 2, 3], [{"op": "remove", "name": 1}], "[1,null,3]", "[]"),
    (
        [1, 2, 3],
        [{"op": "remove", "name": 1}, {"op": "list-remove", "value": None}],
        "[1,null,3]",
        "[]",
    ),
    ("abc", [{"op": "list-push", "value": 1}], '"abc"', "[]"),
    ({"a": 1}, [{"op": "touch"}], '{"a":1}', "[]"),
    ({"x": 1}, [{"op": "initialize", "value": [1, {"a": [2]}]}], '[1,{"a":[2]}]', "[]"),
    ({"a": 1}, [{"op": "set", "name": "a"}], "{}", "[]"),
]


@pytest.mark.parametrize(("base", "patches", "snapshot", "deleted"), SPEC_VECTORS)
def test_spec_vectors(
    base: Any, patches: list[dict[str, Any]], snapshot: str | None, deleted: str
) -> None:
    assert run(base, *patches) == (snapshot, deleted)


THROWING: list[tuple[Any, list[dict[str, Any]], type[PatchError]]] = [
    ([None, r("a")], [{"op": "list-remove", "value": r("a")}], JSTypeError),
    ([1], [{"op": "list-insert", "index": 0, "value": 0}], InvalidListInsertError),
    (
        [r("a"), 1, r("b")],
        [{"op": "remove", "name": 1}, {"op": "list-remove", "value": r("b")}],
        JSTypeError,
    ),
    (5, [{"op": "set", "name": "a", "value": 1}], JSTypeError),
    ({}, [{"op": "frob"}], UnsupportedOperationError),
    ({}, [{"op": "list-set", "index": 0, "value": 1}], UnsupportedOperationError),
    ([1], [{"op": "set", "name": "length", "value": -1}], JSRangeError),
    ([1], [{"op": "remove", "name": "length"}], JSTypeError),
    ("abc", [{"op": "remove", "name": 0}], JSTypeError),
    ([1], [{"op": "list-insert", "index": 0, "values": {}}], JSTypeError),
    ({}, [{"op": "set", "name": {"toString": 1}, "value": 1}], JSTypeError),
]


@pytest.mark.parametrize(("base", "patches", "error"), THROWING)
def test_throwing_vectors(
    base: Any, patches: list[dict[str, Any]], error: type[PatchError]
) -> None:
    with pytest.raises(error) as info:
        run(base, *patches)
    assert type(info.value) is error


def test_error_classes_map_to_js_names() -> None:
    assert JSError.js_name == "Error"
    assert JSTypeError.js_name == "TypeError" and issubclass(JSTypeError, JSError)
    assert JSRangeError.js_name == "RangeError" and issubclass(JSRangeError, JSError)
    assert UnsupportedOperationError.js_name == "Error"
    assert InvalidListInsertError.js_name == "Error"
    assert UnemulatedError.js_name is None and not issubclass(UnemulatedError, JSError)


def test_error_messages_match_js() -> None:
    with pytest.raises(UnsupportedOperationError, match=r"^Unsupported patch operation: frob$"):
        apply_patch({}, {"op": "frob"})
    patch: Any = {"op": "list-insert", "value": 0, "index": 0}
    expected = (
        "Cannot apply list insert patch; expected value or values, received "
        '{"op":"list-insert","value":0,"index":0}'
    )
    with pytest.raises(InvalidListInsertError) as info:
        apply_patch([], patch)
    assert str(info.value) == expected


def test_deleted_refs_survive_a_later_throw() -> None:
    deleted: list[Any] = []
    base: Any = [r("a"), None, r("a")]
    with pytest.raises(JSTypeError):
        apply_patch(base, {"op": "list-remove", "value": r("a")}, deleted)
    assert deleted == [r("a")]
    assert js_stringify(base) == f"[null,{R['a']}]"  # the first removal already happened


def test_patch_mutates_base_in_place_and_returns_it() -> None:
    base: Any = {"a": 1}
    assert apply_patch(base, {"op": "set", "name": "b", "value": 2}) is base
    assert base == {"a": 1, "b": 2}


def test_without_deleted_refs_list_nothing_is_collected_but_errors_stay() -> None:
    assert apply_patch({"a": r("x")}, {"op": "remove", "name": "a"}) == {}
    with pytest.raises(JSTypeError):
        apply_patch([None], {"op": "list-remove", "value": r("x")})


def test_null_and_undefined_bases_stay_as_they_are() -> None:
    assert apply_patch(None, {"op": "frob"}) is None
    assert apply_patch(UNDEFINED, {"op": "delete"}) is UNDEFINED
    assert apply_patch(None, {"op": "initialize", "value": [1]}) == [1]
    assert apply_patch([1], {"op": "initialize"}) is UNDEFINED
    with pytest.raises(JSTypeError):
        apply_patch(None, None)


def test_holes_and_undefined() -> None:
    base: list[Any] = [1, 2, 3]
    apply_patch(base, {"op": "remove", "name": 1})
    assert base == [1, HOLE, 3]
    apply_patch(base, {"op": "list-push"})
    assert base == [1, HOLE, 3, UNDEFINED]
    # list-move-by-ref without a value: findIndex visits the hole as undefined and
    # compareRefs(undefined, undefined) holds, so the hole moves to 0 as undefined
    apply_patch(base, {"op": "list-move-by-ref", "index": 0})
    assert base == [UNDEFINED, 1, 3, UNDEFINED]
    # indexOf skips holes but finds an explicit undefined
    apply_patch(base, {"op": "remove", "name": 1})
    apply_patch(base, {"op": "list-remove", "only": "last"})
    assert base == [UNDEFINED, HOLE, 3]
    assert js_stringify(base) == "[null,null,3]"


def test_set_on_arrays_follows_property_keys() -> None:
    base: Any = [1]
    base = apply_patch(base, {"op": "set", "name": "-1", "value": r("a")})
    assert isinstance(base, JSArray) and js_stringify(base) == "[1]"
    deleted: list[Any] = []
    apply_patch(base, {"op": "remove", "name": -1}, deleted)
    assert deleted == [r("a")]
    base = apply_patch(base, {"op": "set", "name": "length", "value": "3"})
    assert js_stringify(base) == "[1,null,null]"
    base = apply_patch(base, {"op": "set", "name": "length", "value": [1]})
    assert js_stringify(base) == "[1]"


def test_object_key_order_is_javascript_order() -> None:
    base: Any = {"b": 1, "a": 2}
    names: list[Any] = ["10", "2", "-1", "01", 4294967295, 4294967294]
    for name in names:
        base = apply_patch(base, {"op": "set", "name": name, "value": 0})
    assert js_stringify(base) == (
        '{"2":0,"10":0,"4294967294":0,"b":1,"a":2,"-1":0,"01":0,"4294967295":0}'
    )
    apply_patch(base, {"op": "remove", "name": "b"})
    apply_patch(base, {"op": "set", "name": "b", "value": 3})
    assert js_stringify(base).endswith('"4294967295":0,"b":3}')  # type: ignore[union-attr]


def test_proto_key() -> None:
    # an own "__proto__" (from JSON) is an ordinary key...
    base = json.loads('{"__proto__": 1}')
    apply_patch(base, {"op": "set", "name": "__proto__", "value": 2})
    assert js_stringify(base) == '{"__proto__":2}'
    # ...otherwise primitives go to the setter, which ignores them
    assert apply_patch({}, {"op": "set", "name": "__proto__", "value": 2}) == {}
    assert apply_patch({"op": 1}, {"op": "initialize", "value": {"__proto__": 1}}) == {}
    # and objects would change the prototype, which the port refuses
    with pytest.raises(UnemulatedError):
        apply_patch({}, {"op": "set", "name": "__proto__", "value": None})
    with pytest.raises(UnemulatedError):
        apply_patch([], {"op": "initialize", "value": {"a": {"__proto__": r("a")}}})
    assert apply_patch(5, {"op": "set", "name": "__proto__", "value": {}}) == 5


def test_properties_that_shadow_array_methods() -> None:
    # a named property hides the method applyPatch calls on the array
    base: Any = apply_patch([1, 2], {"op": "set", "name": "push", "value": 1})
    with pytest.raises(JSTypeError, match=r"^base\.push is not a function$"):
        apply_patch(base, {"op": "list-push", "value": 3})
    base = apply_patch(base, {"op": "remove", "name": "push"})
    assert apply_patch(base, {"op": "list-push", "value": 3}) == [1, 2, 3]
    # splice builds its result through constructor[Symbol.species]
    base = apply_patch(base, {"op": "set", "name": "constructor", "value": 0})
    with pytest.raises(JSTypeError, match="Symbol.species"):
        apply_patch(base, {"op": "list-remove", "value": 2})
    base = apply_patch(base, {"op": "set", "name": "constructor", "value": {}})
    assert apply_patch(base, {"op": "list-remove", "value": 2}) == [1, 3]
    # list-remove checks the ref before the failing splice, as JS does
    deleted: list[Any] = []
    base = apply_patch([r("a")], {"op": "set", "name": "splice", "value": 1})
    with pytest.raises(JSTypeError):
        apply_patch(base, {"op": "list-remove", "value": r("a")}, deleted)
    assert deleted == [r("a")] and base == [r("a")]


def test_huge_sparse_arrays_are_refused() -> None:
    with pytest.raises(UnemulatedError):
        apply_patch([], {"op": "set", "name": 4294967294, "value": 1})
    with pytest.raises(JSRangeError):
        apply_patch([], {"op": "set", "name": "length", "value": 4294967296})


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (1.5, "1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (0.1 + 0.2, "0.30000000000000004"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-2.5e25, "-2.5e+25"),
        (float("inf"), "Infinity"),
        (float("nan"), "NaN"),
    ],
)
def test_number_to_string(number: float, text: str) -> None:
    assert number_to_string(number) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (" 0x10 ", 16.0),
        ("1_0", None),
        ("inf", None),
        (" -Infinity\n", float("-inf")),
        (".5", 0.5),
        ("5.", 5.0),
        ("0b11", 3.0),
        ("-0x10", None),
        ("1e", None),
        ("\u00a012\ufeff", 12.0),
        ("\x1c12", None),  # Python's isspace() is not JS white space
        ("", 0.0),
        (None, 0.0),
        (UNDEFINED, None),
        (True, 1.0),
        ([5], 5.0),
        ([1, 2], None),
        ([], 0.0),
        ({}, None),
        (2**53 + 1, 9007199254740992.0),
        (10**400, float("inf")),
    ],
)
def test_to_number(value: Any, number: float | None) -> None:
    result = to_number(value)
    if number is None:
        assert result != result
    else:
        assert result == number


def test_to_property_key() -> None:
    assert to_property_key(1) == "1"
    assert to_property_key(1.0) == "1"
    assert to_property_key(-0.0) == "0"
    assert to_property_key(1e21) == "1e+21"
    assert to_property_key(None) == "null"
    assert to_property_key(False) == "false"
    assert to_property_key(UNDEFINED) == "undefined"
    assert to_property_key([1, [2, None, {}]]) == "1,2,,[object Object]"
    with pytest.raises(JSTypeError):
        to_property_key({"toString": 5})


def test_stringify_and_json_compatible() -> None:
    value: Any = {"b": UNDEFINED, "1": [HOLE, UNDEFINED, -0.0, 2.0, 2**53 + 1], "a": "\ud800\u2028"}
    assert js_stringify(value) == '{"1":[null,null,0,2,9007199254740992],"a":"\\ud800\u2028"}'
    plain = to_json_compatible(value)
    assert plain == {"1": [None, None, 0, 2, 9007199254740992.0], "a": "\ud800\u2028"}
    assert isinstance(plain, dict) and list(plain) == ["1", "a"]
    assert to_json_compatible(UNDEFINED) is UNDEFINED
    assert js_stringify(UNDEFINED) is None
    assert js_stringify(float("nan")) == "null"
    assert js_stringify("\ud83d\ude00") == '"\U0001f600"'  # a pair is one character in JS


def test_python_limits_raise_patch_errors_not_crashes() -> None:
    # a 5000-digit key is a plain name (CPython's int() would refuse to parse it)
    key = "9" * 5000
    assert list(apply_patch({}, {"op": "set", "name": key, "value": 1})) == [key]  # type: ignore[arg-type]
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(UnemulatedError):
        apply_patch(None, {"op": "initialize", "value": deep})
