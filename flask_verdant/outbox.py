"""What handling a message produces: replies to its sender and broadcasts to its library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any]


@dataclass(frozen=True)
class Broadcast:
    message: dict[str, Any]
    include_sender: bool


Envelope = Reply | Broadcast
