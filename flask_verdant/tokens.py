"""JWTs in the shape the Verdant client and the reference verifier use.

See docs/protocol.md, "Tokens".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import Any

import jwt

from .errors import ErrorCode, VerdantError
from .validation import is_text

_ALGORITHMS = ["HS256", "HS384", "HS512"]


class ReplicaType(IntEnum):
    REALTIME = 0
    PUSH = 1
    PASSIVE_REALTIME = 2
    PASSIVE_PUSH = 3
    READ_ONLY_PULL = 4
    READ_ONLY_REALTIME = 5

    @property
    def can_write(self) -> bool:
        return self not in (ReplicaType.READ_ONLY_PULL, ReplicaType.READ_ONLY_REALTIME)

    @property
    def always_counts_for_global_ack(self) -> bool:
        """Passive and read-only replicas must not hold back everyone's compaction."""
        return self in (ReplicaType.REALTIME, ReplicaType.PUSH)


@dataclass(frozen=True)
class TokenInfo:
    """The verified claims of one token: who syncs which library, and how."""

    user_id: str
    library_id: str
    sync_endpoint: str
    type: ReplicaType
    role: str | None = None


class TokenProvider:
    """Issues tokens for the host app's auth route; the client decodes them without a secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("TokenProvider needs a non-empty secret")
        self._secret = secret

    def get_token(
        self,
        *,
        library_id: str,
        user_id: str,
        sync_endpoint: str,
        type: ReplicaType = ReplicaType.REALTIME,
        expires_in: timedelta = timedelta(days=1),
        role: str | None = None,
        file_endpoint: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "lib": library_id,
            "url": sync_endpoint,
            "type": int(ReplicaType(type)),
            "iat": now,
            "exp": now + int(expires_in.total_seconds()),
        }
        if role is not None:
            claims["role"] = role
        if file_endpoint is not None:
            claims["file"] = file_endpoint
        return jwt.encode(claims, self._secret, algorithm="HS256")


class TokenVerifier:
    """Checks signature, expiry and the claims the server relies on.

    ``exp`` is required, and may lie at most ``max_lifetime`` seconds ahead: a leaked token
    without one would grant access for ever.

    A pull client sends the same token with every request, and decoding it was a tenth of the
    server's time per HTTP request (BENCHMARKS.md). So the last ``cache_size`` valid tokens that
    callers ask to ``remember`` are kept with what they grant; a remembered token is still
    refused once it expires. A websocket's token is checked once, and keeping it would only cost
    memory (some 4 KiB of resident memory per idle socket, measured).
    """

    def __init__(
        self, secret: str, max_lifetime: float = 7 * 24 * 3600.0, cache_size: int = 1024
    ) -> None:
        self._secret = secret
        self._max_lifetime = max_lifetime
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Keyed by a digest: a token is some 250 bytes, held once per cached client.
        self._valid: OrderedDict[bytes, tuple[TokenInfo, float]] = OrderedDict()

    def verify(self, token: str | None, *, remember: bool = False) -> TokenInfo:
        if not token:
            raise VerdantError(ErrorCode.NO_TOKEN, "A token is required")
        key = hashlib.blake2b(token.encode(), digest_size=16).digest()
        with self._lock:
            known = self._valid.get(key)
            if known is not None:
                self._valid.move_to_end(key)
        if known is not None and time.time() < known[1]:
            return known[0]
        # Decoded here, not in a helper: under gevent an idle websocket keeps the pages its
        # greenlet's deepest call touched, and this is that call (a frame more cost 4 KiB each).
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=_ALGORITHMS,
                options={"require": ["sub", "exp"], "verify_aud": False},
                leeway=0,
            )
        except jwt.ExpiredSignatureError as exc:
            raise VerdantError(ErrorCode.TOKEN_EXPIRED, "The token has expired") from exc
        except jwt.PyJWTError as exc:
            raise VerdantError(ErrorCode.INVALID_TOKEN, f"Invalid token: {exc}") from exc
        expires = float(claims["exp"])
        if expires - time.time() > self._max_lifetime:
            raise VerdantError(
                ErrorCode.INVALID_TOKEN,
                f"The token's lifetime exceeds the server's limit ({self._max_lifetime:g} s)",
            )
        info = _token_info(claims)
        if remember:
            self._remember(key, info, expires)
        return info

    def _remember(self, key: bytes, info: TokenInfo, expires: float) -> None:
        with self._lock:
            self._valid[key] = (info, expires)
            while len(self._valid) > self._cache_size:
                self._valid.popitem(last=False)


def _token_info(claims: dict[str, Any]) -> TokenInfo:
    user_id = claims.get("sub")
    library_id = claims.get("lib")
    if not isinstance(user_id, str) or not user_id:
        raise VerdantError(ErrorCode.INVALID_TOKEN, "The token's sub claim must be a user id")
    if not isinstance(library_id, str) or not library_id:
        raise VerdantError(ErrorCode.INVALID_TOKEN, "The token's lib claim must be a library id")
    if not (is_text(user_id) and is_text(library_id)):
        raise VerdantError(ErrorCode.INVALID_TOKEN, "The token's sub and lib must be valid text")
    return TokenInfo(
        user_id=user_id,
        library_id=library_id,
        sync_endpoint=str(claims.get("url", "")),
        type=_replica_type(claims.get("type", 0)),
        role=claims.get("role") if isinstance(claims.get("role"), str) else None,
    )


def _replica_type(raw: object) -> ReplicaType:
    """Coerce like the client (``parseInt``) but refuse unknown values, so "4" stays read-only."""
    try:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError
        return ReplicaType(int(raw))
    except ValueError as exc:
        raise VerdantError(ErrorCode.INVALID_TOKEN, f"Unknown replica type {raw!r}") from exc
