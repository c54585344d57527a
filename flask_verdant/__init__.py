"""flask-verdant: a Flask extension that is a sync server for Verdant local-first apps."""

from .errors import ErrorCode, VerdantError
from .extension import Verdant
from .tokens import ReplicaType, TokenInfo, TokenProvider

__all__ = [
    "ErrorCode",
    "ReplicaType",
    "TokenInfo",
    "TokenProvider",
    "Verdant",
    "VerdantError",
]
