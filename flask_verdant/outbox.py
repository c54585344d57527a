"""What handling a message produces: replies to its sender and broadcasts to its library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any]


@dataclass(frozen=True)
class Broadcast:
    """``orders``: the server orders an ``op-re`` carries, first and last, so that a connection
    that missed one is noticed before its client acknowledges past it (``hub.Hub.deliver``).
    With an ``audience`` (a user id), only that user's connections get it."""

    message: dict[str, Any]
    include_sender: bool
    orders: tuple[int, int] | None = None
    audience: str | None = None


Envelope = Reply | Broadcast
