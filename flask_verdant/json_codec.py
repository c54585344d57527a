"""One place that turns JSON text into values and back, compact and without NaN.

orjson does the work: every frame is parsed and every reply and broadcast serialized, and with
the stdlib that was the largest item in the server's profile under load (BENCHMARKS.md). orjson
refuses a few inputs that JavaScript accepts, a lone surrogate escape when parsing, and integers
beyond 64 bits, non-string keys or lone surrogates when serializing; for those rare values the
stdlib does the job as before, escaping non-ASCII, so that its text always encodes to UTF-8
(a lone surrogate becomes the escape ``\\ud800``, which JavaScript reads back). NaN and
infinities serialize as ``null``, as ``JSON.stringify`` does. Messages are validated before they
are accepted (``validation``), so encoding what the server holds does not fail; these fallbacks
make sure that even a value that slipped through cannot stop a socket or an answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


class RawJSON:
    """JSON text that ``dumps`` embeds as it is, e.g. an operation's data as stored.

    Relaying stored rows this way spares parsing and re-serializing each of them.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _stdlib_default(value: Any) -> Any:
    if type(value) is RawJSON:
        return json.loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_stdlib_default
)


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_orjson_default).decode()
    except TypeError:
        try:
            return _encoder.encode(value)
        except ValueError:
            return _encoder.encode(_finite(value))


def _finite(value: Any) -> Any:
    """The value with NaN and infinities as ``None``, for the stdlib (which refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(child) for child in value]
    return value


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _orjson_default(value: Any) -> Any:
    if type(value) is RawJSON:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
