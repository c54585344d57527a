"""Documents private to one user: the ``authz`` key of store 5.x operations and baselines.

A store 5.x client marks every operation of a private document with an authorization key, the
base64 of ``u:<userId>:*``; a document whose key names another user must never reach this
user's connections (docs/protocol.md, "Store 5.x"). A client that has not synced yet writes
the placeholder subject ``$$_originator_$$``, which stands for the user who sends it.

Keys are checked when a message is parsed and stored in canonical form, so the server can
compare them as strings when it decides who may read an operation or a baseline.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["ORIGINATOR", "InvalidKey", "claim", "check", "key_for"]

ORIGINATOR: Final = "$$_originator_$$"
_USER_SCOPE: Final = "u"


class InvalidKey(ValueError):
    """An ``authz`` value this server cannot enforce."""


def key_for(user_id: str) -> str:
    """The key that makes a document readable by ``user_id`` alone (``authz.onlyUser``)."""
    return base64.b64encode(f"{_USER_SCOPE}:{user_id}:*".encode()).decode("ascii")


def check(key: object) -> str:
    """The subject (user id) of a well-formed key; raises :class:`InvalidKey` otherwise."""
    if not isinstance(key, str):
        raise InvalidKey("'authz' must be a string")
    try:
        decoded = base64.b64decode(key, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise InvalidKey("'authz' is not base64 of UTF-8 text") from error
    parts = decoded.split(":")
    if len(parts) != 3:
        raise InvalidKey("'authz' must decode to scope:subject:action")
    scope, subject, _action = parts
    if scope != _USER_SCOPE or not subject:
        # Another scope could grant access this server cannot check: refuse rather than leak.
        raise InvalidKey(f"'authz' scope {scope!r} is not supported (only 'u')")
    return subject


def claim(records: Iterable[dict[str, Any]], user_id: str) -> None:
    """Rewrite each record's key in canonical form, the originator placeholder as ``user_id``.

    The records are the client's own dicts, relayed as they are afterwards, so peers see the
    same key the server stores.
    """
    for record in records:
        key = record.get("authz")
        if key is None:
            record.pop("authz", None)
            continue
        subject = check(key)
        record["authz"] = key_for(user_id if subject == ORIGINATOR else subject)
