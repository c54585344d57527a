"""Tokens must expire within a limit, and refusals are slowed per client address (finding 6)."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from flask import Flask

from flask_verdant.testing import VerdantTestClient
from flask_verdant.throttle import AddressBudget, address_key

from .helpers import SECRET
from .realtime_helpers import serving, sync_server
from .test_websocket import _upgrade


def token(**claims: object) -> str:
    base: dict[str, object] = {"sub": "alice", "lib": "lib", "url": "u", "type": 0}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def post(app: Flask, bearer: str, address: str = "127.0.0.1") -> tuple[int, int, float]:
    """Status, error code and seconds taken for a sync request from ``address``."""
    started = time.monotonic()
    response = app.test_client().post(
        "/sync",
        json={"messages": []},
        headers={"Authorization": f"Bearer {bearer}"},
        environ_base={"REMOTE_ADDR": address},
    )
    body = response.get_json()
    return response.status_code, body.get("code", 0), time.monotonic() - started


def test_a_token_without_exp_is_refused(app: Flask) -> None:
    status, code, _ = post(app, token())
    assert (status, code) == (401, 4011)


def test_a_token_beyond_the_lifetime_limit_is_refused(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_MAX_TOKEN_LIFETIME": 3600})
    assert post(app, token(exp=int(time.time()) + 3500))[0] == 200
    status, code, _ = post(app, token(exp=int(time.time()) + 7200))
    assert (status, code) == (401, 4011)
    # The default allows a week, and the provider's default (a day) fits.
    default = make_app({"VERDANT_DATABASE_FILE": app.config.get("VERDANT_DATABASE_FILE")})
    assert post(default, token(exp=int(time.time()) + 6 * 86400))[0] == 200
    assert post(default, token(exp=int(time.time()) + 8 * 86400))[0] == 401


def test_claims_that_are_not_text_are_refused(app: Flask) -> None:
    status, code, _ = post(app, token(sub="\ud800", exp=int(time.time()) + 60))
    assert (status, code) == (401, 4011)


def test_http_refusals_beyond_an_address_budget_are_slowed(app: Flask) -> None:
    server = sync_server(app)
    server.refusing_addresses = AddressBudget(burst=3, per_second=0.01)
    fast = [post(app, f"garbage-{n}") for n in range(3)]
    assert all(status == 401 and took < 0.5 for status, _, took in fast)
    status, _, took = post(app, "garbage-new")
    assert status == 401 and took >= 0.9
    # Another address has its own budget; a valid token is never slowed.
    assert post(app, "garbage-x", address="10.0.0.2")[2] < 0.5
    valid = VerdantTestClient(app, library_id="lib", user_id="alice").token
    status, _, took = post(app, valid)
    assert status == 200 and took < 0.5


def test_websocket_refusals_with_new_tokens_beyond_the_budget_are_slowed(app: Flask) -> None:
    sync_server(app).refusing_addresses = AddressBudget(burst=2, per_second=0.01)
    with serving(app) as address:
        timings = []
        for n in range(3):
            started = time.monotonic()
            assert _upgrade(address, f"garbage-{n}").status_code == 401
            timings.append(time.monotonic() - started)
    assert timings[0] < 0.5 and timings[1] < 0.5
    assert timings[2] >= 0.9


def test_the_budget_refills_and_its_memory_is_bounded() -> None:
    budget = AddressBudget(burst=1, per_second=50.0, size=100)
    assert not budget.refused("192.0.2.1")
    assert budget.refused("192.0.2.1")
    time.sleep(0.05)
    assert not budget.refused("192.0.2.1")
    for n in range(1000):
        budget.refused(f"10.0.{n // 256}.{n % 256}")
    assert len(budget._buckets) == 100


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),
        ("192.0.2.1", "192.0.2.2", False),
    ],
)
def test_ipv6_addresses_share_a_budget_per_64(one: str, other: str, same: bool) -> None:
    assert (address_key(one) == address_key(other)) is same
