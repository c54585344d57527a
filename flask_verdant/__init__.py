"""flask-verdant: a Flask extension that is a sync server for Verdant local-first apps."""

from .errors import ErrorCode, VerdantError
from .extension import Verdant
from .files import FileInfo, FileStorage, LocalFileStorage
from .tokens import ReplicaType, TokenInfo, TokenProvider

__version__ = "0.1.0"

__all__ = [
    "ErrorCode",
    "FileInfo",
    "FileStorage",
    "LocalFileStorage",
    "ReplicaType",
    "TokenInfo",
    "TokenProvider",
    "Verdant",
    "VerdantError",
    "__version__",
]
