"""Error codes shared with the Verdant client, and the exception that carries them.

The numeric codes are the ones `@verdant-web/common` defines; the HTTP status is derived from
the code (``code // 10``) the same way the reference server does, so clients that inspect either
see what they expect.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    INVALID_REQUEST = 4000
    BODY_REQUIRED = 4001
    NO_TOKEN = 4010
    INVALID_TOKEN = 4011
    TOKEN_EXPIRED = 4012
    FORBIDDEN = 4030
    NOT_FOUND = 4040
    METHOD_NOT_ALLOWED = 4050
    MISDIRECTED = 4210
    TOO_LARGE = 4130
    TOO_MANY_REQUESTS = 4290
    UNEXPECTED = 5000
    NO_FILE_STORAGE = 5011
    UNAVAILABLE = 5030


class VerdantError(Exception):
    """A failure that is reported to the client as ``{"code", "message"}``."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        # A repeat the client was already told about: logged at debug level only.
        self.quiet = False

    @property
    def http_status(self) -> int:
        status = int(self.code) // 10
        return status if status < 600 else 500

    def to_json(self) -> dict[str, Any]:
        return {"code": int(self.code), "message": self.message, **self.details}


def bad_request(message: str) -> VerdantError:
    return VerdantError(ErrorCode.INVALID_REQUEST, message)
