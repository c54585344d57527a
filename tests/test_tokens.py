from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from flask_verdant import ErrorCode, ReplicaType, TokenProvider, VerdantError
from flask_verdant.tokens import TokenVerifier

SECRET = "token-test-secret-that-is-long-enough-for-hs256"
LATER = int(time.time()) + 3600


def issue(**overrides: object) -> str:
    options: dict[str, object] = {
        "library_id": "lib",
        "user_id": "alice",
        "sync_endpoint": "http://localhost/sync",
    }
    options.update(overrides)
    return TokenProvider(secret=SECRET).get_token(**options)  # type: ignore[arg-type]


def test_token_carries_the_claims_the_client_and_verifier_use() -> None:
    token = issue(type=ReplicaType.READ_ONLY_PULL, role="viewer", file_endpoint="http://f/x")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert header["alg"] == "HS256"
    assert claims["sub"] == "alice"
    assert claims["lib"] == "lib"
    assert claims["url"] == "http://localhost/sync"
    assert claims["type"] == 4 and isinstance(claims["type"], int)
    assert claims["role"] == "viewer"
    assert claims["file"] == "http://f/x"
    assert claims["exp"] - claims["iat"] == 86400


def test_optional_claims_are_omitted_when_unset() -> None:
    claims = jwt.decode(issue(), SECRET, algorithms=["HS256"])
    assert "role" not in claims and "file" not in claims
    assert claims["type"] == 0


def test_verifier_returns_the_identity() -> None:
    info = TokenVerifier(SECRET).verify(issue(type=ReplicaType.PUSH))
    assert (info.user_id, info.library_id, info.type) == ("alice", "lib", ReplicaType.PUSH)


def test_expired_token_is_4012() -> None:
    token = issue(expires_in=timedelta(seconds=-1))
    with pytest.raises(VerdantError) as caught:
        TokenVerifier(SECRET).verify(token)
    assert caught.value.code == ErrorCode.TOKEN_EXPIRED
    assert caught.value.http_status == 401


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(
            {"sub": "a", "lib": "l", "url": "u", "type": 0}, "another-secret-long-enough-xyz!!"
        ),
        jwt.encode({"sub": "a", "lib": "l", "url": "u", "type": 0}, key=None, algorithm="none"),
        jwt.encode({"lib": "l", "url": "u", "type": 0, "exp": LATER}, SECRET),
        jwt.encode({"sub": "a", "url": "u", "type": 0, "exp": LATER}, SECRET),
        jwt.encode({"sub": "a", "lib": "l", "url": "u", "type": 9, "exp": LATER}, SECRET),
        jwt.encode({"sub": "a", "lib": "l", "url": "u", "type": "admin", "exp": LATER}, SECRET),
        "not-a-jwt",
    ],
    ids=["forged", "alg-none", "no-sub", "no-lib", "unknown-type", "text-type", "garbage"],
)
def test_invalid_tokens_are_4011(token: str) -> None:
    with pytest.raises(VerdantError) as caught:
        TokenVerifier(SECRET).verify(token)
    assert caught.value.code == ErrorCode.INVALID_TOKEN
    assert caught.value.http_status == 401


def test_missing_token_is_4010() -> None:
    with pytest.raises(VerdantError) as caught:
        TokenVerifier(SECRET).verify(None)
    assert caught.value.code == ErrorCode.NO_TOKEN


def test_string_type_claim_is_coerced_so_read_only_stays_read_only() -> None:
    token = jwt.encode(
        {"sub": "a", "lib": "l", "url": "u", "type": "4", "exp": int(time.time()) + 60}, SECRET
    )
    info = TokenVerifier(SECRET).verify(token)
    assert info.type is ReplicaType.READ_ONLY_PULL
    assert not info.type.can_write


def test_provider_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError):
        TokenProvider(secret="")
