"""Long-poll: ``Prefer: wait=<n>`` holds a sync POST until another client's broadcast or timeout."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from flask_verdant.http_transport import _disconnect_probe, preferred_wait
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import serving, sync_server, wait_for

Live = tuple[Flask, str]


@pytest.fixture
def live(make_app: Callable[..., Flask]) -> Iterator[Live]:
    app = make_app({"VERDANT_LONG_POLL_MAX_SECONDS": 5})
    with serving(app) as address:
        yield app, address


def post(
    live: Live, replica: VerdantTestClient, messages: list[dict[str, Any]], wait: int | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {replica.token}"}
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    return requests.post(
        f"http://{live[1]}/sync", json={"messages": messages}, headers=headers, timeout=30
    )


class Poll(threading.Thread):
    """A long-poll running in the background; records when its answer came."""

    def __init__(self, live: Live, replica: VerdantTestClient, messages: list[Any], wait: int):
        super().__init__(daemon=True)
        self.args = (live, replica, messages, wait)
        self.response: requests.Response | None = None
        self.answered_at = 0.0

    def run(self) -> None:
        self.response = post(*self.args)
        self.answered_at = time.monotonic()

    def messages(self) -> list[dict[str, Any]]:
        self.join(10)
        assert self.response is not None and self.response.status_code == 200
        result: list[dict[str, Any]] = self.response.json()["messages"]
        return result


def listening(live: Live, count: int = 1) -> None:
    hub = sync_server(live[0]).hub
    wait_for(lambda: len(hub.members("lib")) == count)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], 0),
        (["wait=10"], 10),
        (["respond-async, wait=3"], 3),
        (['wait="7"; foo=bar'], 7),
        (["WAIT = 4"], 4),
        (["wait=999999"], 25),
        (["wait=-1"], 0),
        (["wait=1.5"], 0),
        (["wait=²"], 0),
        (["handling=lenient", "wait=2"], 2),
    ],
)
def test_the_wait_preference_is_parsed_and_capped(headers: list[str], expected: int) -> None:
    assert preferred_wait(headers, 25) == expected


def test_a_request_without_the_header_is_answered_at_once(live: Live) -> None:
    alice = VerdantTestClient(live[0], library_id="lib", user_id="alice")
    started = time.monotonic()
    response = post(live, alice, [])
    assert time.monotonic() - started < 0.5
    assert response.json() == {"messages": []}
    assert "Preference-Applied" not in response.headers


def test_a_pure_listen_is_held_for_the_capped_wait_when_nothing_happens(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app({"VERDANT_LONG_POLL_MAX_SECONDS": 1})
    with serving(app) as address:
        alice = VerdantTestClient(app, library_id="lib", user_id="alice")
        started = time.monotonic()
        response = post((app, address), alice, [], wait=30)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.json() == {"messages": []}


def test_long_poll_can_be_switched_off(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_LONG_POLL_MAX_SECONDS": 0})
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    response = alice.post({"messages": []}, headers={"Prefer": "wait=10"})
    assert response.get_json() == {"messages": []}
    assert "Preference-Applied" not in response.headers


def test_a_long_poll_receives_another_replicas_op_within_100ms_of_its_server_ack(
    live: Live,
) -> None:
    alice, bob = (VerdantTestClient(live[0], library_id="lib", user_id=u) for u in ("a", "b"))
    for replica in (alice, bob):
        post(live, replica, [replica.sync_message()])
    poll = Poll(live, alice, [], wait=5)
    poll.start()
    listening(live)
    op = bob.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
    response = post(live, bob, [bob.op_message(op)])
    acked_at = time.monotonic()  # over HTTP the answer itself acknowledges (no server-ack)
    assert response.status_code == 200
    messages = poll.messages()
    assert poll.answered_at - acked_at < 0.1
    assert of_type(messages, "op-re")[0]["operations"] == [op]
    assert poll.response is not None and poll.response.headers["Preference-Applied"] == "wait=5"


def test_the_held_request_still_carries_its_own_replies_first(live: Live) -> None:
    alice, bob = (VerdantTestClient(live[0], library_id="lib", user_id=u) for u in ("a", "b"))
    post(live, bob, [bob.sync_message()])
    # alice's own presence-changed does not end her wait; bob's presence does
    poll = Poll(live, alice, [alice.presence_message({"x": 1}), alice.sync_message()], wait=5)
    poll.start()
    listening(live)
    time.sleep(0.3)
    assert poll.is_alive()
    post(live, bob, [bob.presence_message({"y": 2})])
    kinds = [m["type"] for m in poll.messages()]
    assert kinds == ["presence-changed", "sync-resp", "need-since", "presence-changed"]


def test_a_held_request_ends_cleanly_when_its_client_disconnects(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    alice = VerdantTestClient(live[0], library_id="lib", user_id="alice")
    body = json.dumps({"messages": []}).encode()
    host, port = live[1].split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {alice.token}\r\nPrefer: wait=5\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        listening(live)
    closed_at = time.monotonic()
    listening(live, 0)
    assert time.monotonic() - closed_at < 2.0
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_held_request_on_a_descriptor_past_1023_is_not_taken_for_gone() -> None:
    """select() cannot watch such a descriptor; a busy worker has them. The probe must not fail."""

    class HighDescriptor:
        def fileno(self) -> int:
            return 5000

    probe = _disconnect_probe({"werkzeug.socket": HighDescriptor()})
    assert probe() is False
