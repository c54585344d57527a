"""The verifier remembers valid tokens (a pull client sends its token with every request), but
never lets a remembered token outlive its expiry, and never remembers an invalid one."""

from __future__ import annotations

import time

import jwt
import pytest

from flask_verdant import ErrorCode, VerdantError
from flask_verdant.tokens import TokenVerifier

SECRET = "token-cache-secret-that-is-long-enough-for-hs256"


def token(user: str = "alice", **claims: object) -> str:
    claims.setdefault("exp", int(time.time()) + 600)
    return jwt.encode({"sub": user, "lib": "lib", "url": "http://h/sync", **claims}, SECRET)


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    verifier = TokenVerifier(SECRET)
    expires = int(time.time()) + 2  # whole seconds: at least one of validity
    expiring = token(exp=expires)
    assert verifier.verify(expiring, remember=True).user_id == "alice"
    assert verifier.verify(expiring, remember=True).user_id == "alice"
    time.sleep(max(0.0, expires - time.time()) + 0.01)
    with pytest.raises(VerdantError) as caught:
        verifier.verify(expiring, remember=True)
    assert caught.value.code == ErrorCode.TOKEN_EXPIRED


def test_invalid_tokens_are_refused_every_time() -> None:
    verifier = TokenVerifier(SECRET)
    forged = jwt.encode({"sub": "mallory", "lib": "lib"}, "another-secret-long-enough-for-hs256")
    for _ in range(2):
        with pytest.raises(VerdantError):
            verifier.verify(forged, remember=True)


def test_only_the_most_recent_tokens_are_remembered() -> None:
    verifier = TokenVerifier(SECRET, cache_size=2)
    tokens = [token(f"user{n}") for n in range(3)]
    for each in tokens:
        verifier.verify(each, remember=True)
    assert len(verifier._valid) == 2
    assert verifier.verify(tokens[0], remember=True).user_id == "user0"
    assert [info.user_id for info, _ in verifier._valid.values()] == ["user2", "user0"]


def test_tokens_are_remembered_only_when_asked() -> None:
    verifier = TokenVerifier(SECRET)
    assert verifier.verify(token()).user_id == "alice"
    assert len(verifier._valid) == 0
