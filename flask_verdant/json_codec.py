"""One place that turns JSON text into values and back, compact and without NaN."""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    return _encoder.encode(value)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
