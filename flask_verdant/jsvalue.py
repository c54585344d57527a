"""A small model of JavaScript values, enough to replay Verdant patches exactly.

Clients apply patches with JavaScript semantics (array holes, ``undefined``,
string property keys, ``===``), and the server must compute the same snapshots
when it compacts history, so the patch model works on this representation:

* JSON values as :func:`json.loads` returns them (``dict``, ``list``, ``str``,
  ``int``, ``float``, ``bool``, ``None``);
* :data:`UNDEFINED` for ``undefined`` (an absent patch field, an array element
  or object value holding ``undefined``, a deleted entity);
* :data:`HOLE` for an array index that has no element;
* :class:`JSArray`, a ``list`` that also carries the named (non-index)
  properties a ``set`` may put on an array; JSON never shows them.

Numbers are IEEE doubles in JavaScript, so integers are compared and printed
as the double they parse to. Object keys that are array indexes sort first,
as in JavaScript. :func:`js_stringify` gives the exact ``JSON.stringify`` text.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable
from typing import ClassVar, Final, Union

__all__ = [
    "HOLE",
    "UNDEFINED",
    "JSArray",
    "JSError",
    "JSRangeError",
    "JSTypeError",
    "MAX_DENSE_ARRAY_LENGTH",
    "JSValue",
    "PatchError",
    "Sentinel",
    "UnemulatedError",
    "array_index",
    "is_number",
    "is_truthy",
    "js_stringify",
    "number_to_string",
    "own_keys",
    "read_property",
    "strict_equals",
    "to_integer_or_infinity",
    "to_json_compatible",
    "to_number",
    "to_property_key",
    "to_string",
    "to_uint32",
]


class Sentinel(enum.Enum):
    """The two in-memory states JSON cannot express; both are falsy, as in JS."""

    UNDEFINED = "undefined"
    HOLE = "hole"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return self.name


UNDEFINED: Final = Sentinel.UNDEFINED
HOLE: Final = Sentinel.HOLE

JSValue = Union[None, bool, int, float, str, Sentinel, "list[JSValue]", "dict[str, JSValue]"]

#: Arrays are dense Python lists, so an index or ``length`` that would need
#: more elements than this is refused instead of allocating them.
MAX_DENSE_ARRAY_LENGTH: Final = 1_000_000
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_MAX_SAFE_INTEGER: Final = 2**53


class JSArray(list[JSValue]):
    """A list that also holds named properties, which JS arrays can carry.

    ``set {name: "foo"}`` on an array stores a property that JSON never
    shows, but a later ``set``/``remove`` of the same name reads it back.
    """

    props: dict[str, JSValue]

    def __init__(
        self, items: Iterable[JSValue] = (), props: dict[str, JSValue] | None = None
    ) -> None:
        super().__init__(items)
        self.props = {} if props is None else props


class PatchError(Exception):
    """Base of everything raised while applying patches.

    ``js_name`` names the JavaScript error class that ``@verdant-web/common``
    throws in the same situation, or is ``None`` when JavaScript would not
    throw but the port refuses (see :class:`UnemulatedError`).
    """

    js_name: ClassVar[str | None] = None


class JSError(PatchError):
    """JavaScript would throw ``Error``."""

    js_name: ClassVar[str | None] = "Error"


class JSTypeError(JSError):
    """JavaScript would throw ``TypeError`` (a subclass of ``Error`` there too)."""

    js_name: ClassVar[str | None] = "TypeError"


class JSRangeError(JSError):
    """JavaScript would throw ``RangeError``."""

    js_name: ClassVar[str | None] = "RangeError"


class UnemulatedError(PatchError):
    """JavaScript goes on, but this port cannot follow it faithfully.

    Raised for prototype changes (assigning an object or ``null`` through a
    ``__proto__`` key) and for arrays that would need more than
    :data:`MAX_DENSE_ARRAY_LENGTH` elements. Callers treat the document like one
    whose patches throw: keep its operations instead of compacting them.
    """


def is_number(value: object) -> bool:
    """True for JS numbers; ``bool`` is an ``int`` in Python but not in JS."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_double(value: int | float) -> float:
    """The double a JSON number parses to in JS (huge integers become ±Infinity)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def is_truthy(value: JSValue) -> bool:
    """JS ``ToBoolean``: ``NaN`` and ``-0`` are falsy, every object is truthy."""
    if isinstance(value, (dict, list)):
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = _as_double(value)
        return number == number and number != 0
    return bool(value)


def strict_equals(a: JSValue, b: JSValue) -> bool:
    """JS ``===``: numbers by double value, objects by identity, no coercion."""
    if isinstance(a, (str, bool)):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)):
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            return False
        return _as_double(a) == _as_double(b)
    return a is b  # objects by identity; None, UNDEFINED, HOLE are singletons


def number_to_string(number: float) -> str:
    """JS ``Number.prototype.toString()``: shortest digits, JS exponent rules."""
    if number != number:
        return "NaN"
    if number == 0:
        return "0"
    if number < 0:
        return "-" + number_to_string(-number)
    if math.isinf(number):
        return "Infinity"
    mantissa, _, exp_text = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = int(exp_text or 0) - len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    k, n = len(stripped), len(stripped) + exponent
    if k <= n <= 21:
        return stripped + "0" * (n - k)
    if 0 < n <= 21:
        return stripped[:n] + "." + stripped[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + stripped
    e = n - 1
    head = stripped if k == 1 else stripped[0] + "." + stripped[1:]
    return f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def _object_to_primitive(value: dict[str, JSValue] | list[JSValue]) -> str:
    """JS ``ToPrimitive`` of a JSON object or array (no functions exist in JSON).

    An own ``toString``/``valueOf`` key from JSON is not callable, so it only
    hides the inherited method; a plain object then has no way left to become
    a primitive.
    """
    if isinstance(value, dict):
        if "toString" in value:
            raise JSTypeError("Cannot convert object to primitive value")
        return "[object Object]"
    props = value.props if isinstance(value, JSArray) else {}
    if "toString" in props:
        raise JSTypeError("Cannot convert object to primitive value")
    if "join" in props:
        return "[object Array]"
    return ",".join(
        "" if item is None or isinstance(item, Sentinel) else to_string(item) for item in value
    )


def to_string(value: JSValue) -> str:
    """JS ``ToString`` for the values a patch can carry."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number_to_string(_as_double(value))
    if value is None:
        return "null"
    if isinstance(value, Sentinel):
        return "undefined"
    return _object_to_primitive(value)


to_property_key = to_string
"""JS ``ToPropertyKey``: without symbols it is ``ToString``."""

# StrWhiteSpaceChar: WhiteSpace and LineTerminator, not Python's str.isspace().
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_DECIMAL = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def _string_to_number(text: str) -> float:
    text = re.sub(f"^[{_JS_SPACE}]+|[{_JS_SPACE}]+$", "", text)
    if not text:
        return 0.0
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return -math.inf if text[0] == "-" else math.inf
    if _DECIMAL.fullmatch(text):
        return float(text)
    if _NON_DECIMAL.fullmatch(text):
        base = {"x": 16, "o": 8, "b": 2}[text[1].lower()]
        return _as_double(int(text[2:], base))
    return math.nan


def to_number(value: JSValue) -> float:
    """JS ``ToNumber`` (objects go through ``ToPrimitive`` first)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return _as_double(value)
    if value is None:
        return 0.0
    if isinstance(value, Sentinel):
        return math.nan
    if isinstance(value, str):
        return _string_to_number(value)
    return _string_to_number(_object_to_primitive(value))


def to_integer_or_infinity(value: JSValue) -> float:
    """JS ``ToIntegerOrInfinity``: truncate toward zero, ``NaN`` becomes 0."""
    number = to_number(value)
    if number != number:
        return 0
    if math.isinf(number):
        return number
    return math.trunc(number)


def to_uint32(value: JSValue) -> int:
    """JS ``ToUint32``."""
    number = to_number(value)
    if number != number or math.isinf(number):
        return 0
    return math.trunc(number) % 2**32


def array_index(key: str) -> int | None:
    """The index a property key names on an array, or ``None`` for other keys.

    Only the canonical decimal form of an integer in ``[0, 2**32 - 2]`` is an
    index: ``"01"``, ``"-1"``, ``"1.0"`` and ``"4294967295"`` are plain names.
    """
    # 10 digits at most: also keeps int() clear of CPython's digit limit
    if not (0 < len(key) <= 10 and key.isascii() and key.isdigit()) or (key[0] == "0" != key):
        return None
    index = int(key)
    return index if index <= _MAX_ARRAY_INDEX else None


def own_keys(obj: dict[str, JSValue]) -> list[str]:
    """Keys in JS enumeration order: array indexes ascending, then insertion order."""
    indexed: list[tuple[int, str]] = []
    named: list[str] = []
    for key in obj:
        index = array_index(key)
        if index is None:
            named.append(key)
        else:
            indexed.append((index, key))
    indexed.sort()
    return [key for _, key in indexed] + named


def read_property(value: JSValue, key: str) -> JSValue:
    """``value[key]`` as far as the patch model can observe it.

    Inherited members (``constructor``, ``__proto__``, string methods...) are
    reported as :data:`UNDEFINED`: none of them is ever a ref or an id, which is
    all the patch model reads properties for. Callers must not read ``null`` or
    ``undefined`` (JS throws; they raise themselves with the right message).
    """
    if isinstance(value, dict):
        return value.get(key, UNDEFINED)
    if isinstance(value, (list, str)):
        index = array_index(key)
        if index is not None:
            if index >= len(value):
                return UNDEFINED
            item = value[index]
            return UNDEFINED if item is HOLE else item
        if key == "length":
            return len(value)
        if isinstance(value, JSArray):
            return value.props.get(key, UNDEFINED)
    return UNDEFINED


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _quote(text: str) -> str:
    """A JSON string literal as JS writes it: raw non-ASCII, escaped lone surrogates."""
    if _LONE_SURROGATE.search(text):
        text = _SURROGATE_PAIR.sub(
            lambda m: chr(0x10000 + ((ord(m[0][0]) - 0xD800) << 10) + ord(m[0][1]) - 0xDC00), text
        )
        quoted = json.dumps(text, ensure_ascii=False)
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", quoted)
    return json.dumps(text, ensure_ascii=False)


def _write(value: JSValue, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, (int, float)):
        number = _as_double(value)
        out.append(number_to_string(number) if math.isfinite(number) else "null")
    elif isinstance(value, list):
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            if item is None or isinstance(item, Sentinel):
                out.append("null")
            else:
                _write(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in own_keys(value):
            item = value[key]
            if isinstance(item, Sentinel):
                continue
            out.append("" if first else ",")
            first = False
            out.append(_quote(key) + ":")
            _write(item, out)
        out.append("}")
    else:
        out.append("null")


def js_stringify(value: JSValue) -> str | None:
    """Exactly what ``JSON.stringify(value)`` returns; ``None`` for ``undefined``."""
    if isinstance(value, Sentinel):
        return None
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def to_json_compatible(value: JSValue) -> JSValue:
    """Plain JSON data equal to what ``JSON.parse(JSON.stringify(value))`` gives.

    Holes and ``undefined`` in arrays become ``None``, ``undefined`` object
    values are dropped, keys come in JS order, array properties vanish, and
    numbers become the double JS would hold (``NaN``/``Infinity`` become
    ``None``, integral doubles below 2**53 become ``int``). A top-level
    :data:`UNDEFINED` is returned as is: it means "no value" (deleted), which
    ``None`` (JSON ``null``) does not. ``json.dumps`` of the result parses to
    the same value; use :func:`js_stringify` for identical text.
    """
    if isinstance(value, Sentinel):
        return UNDEFINED
    return _plain(value)


def _plain(value: JSValue) -> JSValue:
    if isinstance(value, list):
        return [None if isinstance(item, Sentinel) else _plain(item) for item in value]
    if isinstance(value, dict):
        return {
            key: _plain(value[key])
            for key in own_keys(value)
            if not isinstance(value[key], Sentinel)
        }
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) or abs(value) > _MAX_SAFE_INTEGER:
        number = _as_double(value)
        if not math.isfinite(number):
            return None
        if number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER:
            return int(number)
        return number
    return value
