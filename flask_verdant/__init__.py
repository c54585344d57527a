"""flask-verdant: a Flask extension that is a sync server for Verdant local-first apps.

The names below are imported on first use, so the protocol core (``engine``, ``storage``,
``presence``, ``broker``, ``coordination``, ...) can be imported without Flask or gevent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import ErrorCode, VerdantError
    from .extension import Verdant
    from .files import FileInfo, FileStorage, LocalFileStorage
    from .tokens import ReplicaType, TokenInfo, TokenProvider

_EXPORTS = {
    "ErrorCode": ".errors",
    "FileInfo": ".files",
    "FileStorage": ".files",
    "LocalFileStorage": ".files",
    "ReplicaType": ".tokens",
    "TokenInfo": ".tokens",
    "TokenProvider": ".tokens",
    "Verdant": ".extension",
    "VerdantError": ".errors",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flask_verdant' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
