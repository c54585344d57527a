"""One place that turns JSON text into values and back, compact and without NaN.

orjson does the work: every frame is parsed and every reply and broadcast serialized, and with
the stdlib that was the largest item in the server's profile under load (BENCHMARKS.md). orjson
refuses a few inputs that JavaScript accepts, a lone surrogate escape when parsing, and integers
beyond 64 bits, non-string keys or lone surrogates when serializing; for those rare values the
stdlib does the job as before. NaN and infinities serialize as ``null``, as ``JSON.stringify``
does.
"""

from __future__ import annotations

import json
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
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_stdlib_default
)


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_orjson_default).decode()
    except TypeError:
        return _encoder.encode(value)


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _orjson_default(value: Any) -> Any:
    if type(value) is RawJSON:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
