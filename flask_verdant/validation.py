"""Limits on the values a client may send, checked before anything is accepted.

Whatever the server accepts it must be able to store in sqlite and encode again for every
peer, over and over: a lone UTF-16 surrogate (JSON ``"\\ud800"``) is valid JSON text but not
encodable text, a value nested a thousand levels deep overflows encoders, and ``1e400`` or an
integer beyond a double are numbers no JavaScript client can hold. One such value accepted into
presence or history would break the answers of everyone in its library, so a message holding
one is refused whole (400 over HTTP, close 1007 on a websocket).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from .errors import ErrorCode, VerdantError

# The largest integer a double (a JavaScript number) holds; beyond it a client sees Infinity.
_MAX_INTEGER = int(sys.float_info.max)
# Whatever the setting, validation never recurses deeper than this.
_DEPTH_CAP = 500


class InvalidValue(VerdantError):
    """A message whose values the server could not store or encode again (not a shape error)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_REQUEST, message)


@dataclass(frozen=True)
class Limits:
    """``max_depth`` counts nesting from the message object itself (the message is depth 1)."""

    max_depth: int = 64
    max_id_chars: int = 1024


DEFAULT_LIMITS = Limits()


def check_value(value: object, limits: Limits) -> None:
    """Refuse a decoded JSON value that is too deep or holds text or numbers we cannot keep.

    Recursive, but never deeper than ``limits.max_depth`` (checked before descending), so a
    value deeper than Python's recursion limit is refused, not crashed on.
    """
    _check(value, 1, min(limits.max_depth, _DEPTH_CAP))


def _check(item: object, depth: int, max_depth: int) -> None:
    if isinstance(item, str):
        _check_text(item)
    elif isinstance(item, (dict, list)):
        if depth > max_depth:
            raise InvalidValue(f"The message is nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                _check(child, depth + 1, max_depth)
        else:
            for child in item:
                _check(child, depth + 1, max_depth)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if not -_MAX_INTEGER <= item <= _MAX_INTEGER:
            raise InvalidValue("An integer in the message is too large for a JSON number")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise InvalidValue("A number in the message is out of range (NaN or infinite)")
    else:
        raise InvalidValue(f"A {type(item).__name__} is not a JSON value")


def check_id(value: str, key: str, limits: Limits) -> None:
    if len(value) > limits.max_id_chars:
        raise InvalidValue(f"'{key}' is longer than {limits.max_id_chars} characters")


def is_text(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str) -> None:
    if not is_text(text):
        raise InvalidValue("The message holds text that is not valid Unicode (a lone surrogate)")
