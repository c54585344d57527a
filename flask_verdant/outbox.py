"""What handling a message produces: replies to its sender and broadcasts to its library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any]


@dataclass(frozen=True)
class Broadcast:
    """To the library's connections; with an ``audience`` (a user id), only to that user's."""

    message: dict[str, Any]
    include_sender: bool
    audience: str | None = None


Envelope = Reply | Broadcast
