"""The websocket transport: handshake and auth, message flow, refused frames, presence on close."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from typing import Any

import pytest
import requests

from flask_verdant import TokenProvider
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import Harness, Live, Socket, sync_server, wait_for


@pytest.fixture
def live(harness: Harness) -> Live:
    return harness.serve()


def join(s: Socket, replica: VerdantTestClient, presence: Any = None) -> list[dict[str, Any]]:
    """Open the way the real client does: presence-update, then sync; return what came back."""
    s.send(replica.presence_message(presence or {"name": replica.user_id}))
    s.send(replica.sync_message())
    received = s.receive_until("sync-resp")
    if not of_type(received, "presence-changed"):
        received += s.receive_until("presence-changed")
    return received


def client(live: Live, user: str, library: str = "lib", **kw: Any) -> VerdantTestClient:
    return VerdantTestClient(live[0], library_id=library, user_id=user, **kw)


def heartbeat(s: Socket, replica: VerdantTestClient) -> list[dict[str, Any]]:
    """Send a heartbeat and return everything up to its response."""
    s.send({"type": "heartbeat", "replicaId": replica.replica_id, "timestamp": replica.clock.now()})
    return s.receive_until("heartbeat-response")


# -- handshake and authentication ---------------------------------------------------------------


def test_the_handshake_selects_bearer_and_takes_the_token_from_the_subprotocol(
    harness: Harness, live: Live
) -> None:
    alice = client(live, "alice")
    s = harness.connect(live, alice)
    assert s.subprotocol == "Bearer"
    assert heartbeat(s, alice) == [{"type": "heartbeat-response"}]


@pytest.mark.parametrize("where", ["authorization", "query"])
def test_the_token_may_also_come_from_the_authorization_header_or_the_query(
    harness: Harness, live: Live, where: str
) -> None:
    alice = client(live, "alice")
    if where == "authorization":
        s = Socket(live[1], None, header=[f"Authorization: Bearer {alice.token}"])
    else:
        s = Socket(live[1], None, path=f"/sync?token={alice.token}")
    harness.sockets.append(s)
    assert s.subprotocol is None
    assert heartbeat(s, alice) == [{"type": "heartbeat-response"}]


def _upgrade(address: str, token: str | None) -> requests.Response:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    if token is not None:
        headers["Sec-WebSocket-Protocol"] = f"Bearer, {token}"
    return requests.get(f"http://{address}/sync", headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("token", "code"),
    [("expired", 4012), ("forged", 4011), ("garbage", 4011), (None, 4010)],
)
def test_a_bad_token_is_refused_with_401_before_the_upgrade(
    live: Live, token: str | None, code: int
) -> None:
    app, address = live
    if token == "expired":
        token = client(live, "alice", expires_in=timedelta(seconds=-5)).token
    elif token == "forged":
        token = TokenProvider("not-the-server-secret-but-long-enough-!!").get_token(
            library_id="lib", user_id="alice", sync_endpoint=f"http://{address}/sync"
        )
    response = _upgrade(address, token)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert sync_server(app).hub.members("lib") == []


def test_a_client_retrying_a_refused_token_is_slowed_down(live: Live) -> None:
    app, address = live
    expired = client(live, "alice", expires_in=timedelta(seconds=-5)).token
    timings = []
    for token in (expired, expired, "garbage"):
        started = time.monotonic()
        assert _upgrade(address, token).status_code == 401
        timings.append(time.monotonic() - started)
    first, repeat, other = timings
    assert first < 0.5 and other < 0.5
    assert repeat >= 0.9


def test_a_plain_get_of_the_sync_path_is_a_client_error(live: Live) -> None:
    assert 400 <= requests.get(f"http://{live[1]}/sync", timeout=5).status_code < 500


# -- message flow -------------------------------------------------------------------------------


def test_ops_reach_the_other_sockets_but_not_the_sender(harness: Harness, live: Live) -> None:
    alice, bob = client(live, "alice"), client(live, "bob")
    a, b = harness.connect(live, alice), harness.connect(live, bob)
    join(a, alice)
    join(b, bob)
    a.receive_until("presence-changed")  # bob arrived
    op = alice.operation("items/1:x", {"op": "set", "name": "title", "value": "hi"})
    a.send(alice.op_message(op))
    assert not of_type(a.receive_until("server-ack"), "op-re")
    relayed = b.receive_until("op-re")[-1]
    assert relayed["operations"] == [op] and relayed["replicaId"] == alice.replica_id


def test_presence_is_mirrored_and_listed_in_sync_responses(harness: Harness, live: Live) -> None:
    alice, bob = client(live, "alice"), client(live, "bob")
    a = harness.connect(live, alice)
    join(a, alice, {"cursor": 1})
    b = harness.connect(live, bob)
    received = join(b, bob, {"cursor": 2})
    peers = of_type(received, "sync-resp")[0]["peerPresence"]
    assert peers["alice"]["presence"] == {"cursor": 1}
    changed = a.receive_until("presence-changed")[-1]
    assert changed["userInfo"] == {
        "id": "bob",
        "presence": {"cursor": 2},
        "profile": {"id": "bob"},
        "replicaId": bob.replica_id,
        "internal": {},
    }


# -- store 5.x ------------------------------------------------------------------------------------


def store5_presence(replica: VerdantTestClient, **fields: Any) -> dict[str, Any]:
    return {"type": "presence-update", "replicaId": replica.replica_id, **fields}


def test_store5_internal_presence_is_kept_merged_and_returned(harness: Harness, live: Live) -> None:
    alice, bob = client(live, "alice"), client(live, "bob")
    a = harness.connect(live, alice)
    a.send(store5_presence(alice, presence={"cursor": 1}, internal={"viewId": "v1"}))
    a.send(alice.sync_message())
    a.receive_until("sync-resp")
    b = harness.connect(live, bob)
    peers = of_type(join(b, bob), "sync-resp")[0]["peerPresence"]
    assert peers["alice"]["internal"] == {"viewId": "v1"}
    # setViewId: only `internal`, which replaces the old one; the presence stays
    a.send(store5_presence(alice, internal={"viewId": "v2", "lastFieldId": "f"}))
    mirrored = next_presence_of(a, "alice")
    assert mirrored["presence"] == {"cursor": 1}
    assert mirrored["internal"] == {"viewId": "v2", "lastFieldId": "f"}
    # a presence change keeps `internal`
    a.send(store5_presence(alice, presence={"cursor": 2}, internal={"viewId": "v2"}))
    a.send(store5_presence(alice, presence={"cursor": 3}))
    assert next_presence_of(b, "alice")["internal"] == {"viewId": "v2", "lastFieldId": "f"}
    assert next_presence_of(b, "alice")["presence"] == {"cursor": 2}
    assert next_presence_of(b, "alice") == {
        "id": "alice",
        "presence": {"cursor": 3},
        "profile": {"id": "alice"},
        "replicaId": alice.replica_id,
        "internal": {"viewId": "v2"},
    }


def next_presence_of(s: Socket, user: str) -> dict[str, Any]:
    """The ``userInfo`` of the next ``presence-changed`` about ``user``."""
    while True:
        for message in of_type(s.receive_until("presence-changed"), "presence-changed"):
            if message["userInfo"]["id"] == user:
                info: dict[str, Any] = message["userInfo"]
                return info


def test_disconnecting_makes_the_replica_leave_at_once_quietly(
    harness: Harness, live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = client(live, "alice"), client(live, "bob")
    a, b = harness.connect(live, alice), harness.connect(live, bob)
    join(a, alice)
    join(b, bob)
    b.send({"type": "disconnecting", "replicaId": bob.replica_id, "reason": "closing"})
    # bob's socket is still open: alice hears of it from the message itself
    offline = [m for m in a.receive_until("presence-offline") if m["type"] == "presence-offline"]
    assert offline == [{"type": "presence-offline", "replicaId": bob.replica_id, "userId": "bob"}]
    assert "bob" not in sync_server(live[0]).presence.peers("lib")
    b.close()
    _no_offline_for(a, alice, 0.3)
    assert "Ignored a websocket frame" not in caplog.text


def last_seen(live: Live, replica: VerdantTestClient) -> int:
    """The replica's "last seen" time as stored."""
    with sync_server(live[0]).database.read() as tx:
        record = tx.get_replica("lib", replica.replica_id)
    assert record is not None and record.last_seen_ms is not None
    return record.last_seen_ms


def next_millisecond() -> None:
    """Let the millisecond clock move on (a busy wait of 50 ms)."""
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        pass


def test_a_heartbeat_without_replica_id_keeps_the_sockets_replica_seen(
    harness: Harness,
) -> None:
    # Every heartbeat writes "last seen" with so short a truancy time (see the next test).
    live = harness.serve({"VERDANT_REPLICA_TRUANCY_MINUTES": 0.001})
    alice = client(live, "alice")
    a = harness.connect(live, alice)
    join(a, alice)

    before = last_seen(live, alice)
    next_millisecond()
    a.send({"type": "heartbeat"})
    a.receive_until("heartbeat-response")
    assert last_seen(live, alice) > before


# -- refused frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("truancy_minutes", [14 * 24 * 60, 0.001])
def test_heartbeats_write_last_seen_at_most_once_a_hundredth_of_the_truancy_time(
    harness: Harness, truancy_minutes: float
) -> None:
    """At most once a minute by default, counting the write of the sync before: a write
    transaction per heartbeat is most of its cost, and truancy is counted in days
    (docs/configuration.md)."""
    live = harness.serve({"VERDANT_REPLICA_TRUANCY_MINUTES": truancy_minutes})
    alice = client(live, "alice")
    a = harness.connect(live, alice)
    join(a, alice)

    seen = [last_seen(live, alice)]
    for _ in range(2):
        next_millisecond()
        heartbeat(a, alice)
        seen.append(last_seen(live, alice))
    assert (seen[1] > seen[0]) is (truancy_minutes < 1)
    assert (seen[2] > seen[1]) is (truancy_minutes < 1)


def test_a_frame_that_is_not_json_closes_with_1003_and_others_carry_on(
    harness: Harness, live: Live
) -> None:
    alice, mallory = client(live, "alice"), client(live, "mallory")
    a, m = harness.connect(live, alice), harness.connect(live, mallory)
    join(a, alice)
    join(m, mallory)
    m.send_raw("{not json")
    assert m.close_code() == 1003
    offline = a.receive_until("presence-offline")[-1]
    assert offline == {
        "type": "presence-offline",
        "replicaId": mallory.replica_id,
        "userId": "mallory",
    }
    assert heartbeat(a, alice)[-1] == {"type": "heartbeat-response"}


@pytest.mark.parametrize(
    "frame",
    [
        '"a string"',
        '{"type": "no-such-type", "replicaId": "r"}',
        '{"type": "op", "replicaId": "r", "timestamp": "t", "operations": "nope"}',
        '{"type": "ack", "replicaId": "r", "nonce": "not a nonce"}',
        b'{"type": "presence-update"}',
    ],
)
def test_a_frame_of_the_wrong_shape_is_ignored_and_logged(
    harness: Harness, live: Live, frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    alice = client(live, "alice")
    a = harness.connect(live, alice)
    join(a, alice)
    a.send_raw(frame)
    assert heartbeat(a, alice) == [{"type": "heartbeat-response"}]
    assert "Ignored a websocket frame" in caplog.text


def test_an_oversize_frame_closes_with_1009(harness: Harness) -> None:
    live = harness.serve({"VERDANT_MAX_MESSAGE_BYTES": 10_000})
    alice = client(live, "alice")
    s = harness.connect(live, alice)
    s.send(alice.presence_message({"blob": "x" * 20_000}))
    assert s.close_code() == 1009


def test_a_replica_of_another_user_closes_with_1008(harness: Harness, live: Live) -> None:
    alice, mallory = client(live, "alice"), client(live, "mallory")
    a, m = harness.connect(live, alice), harness.connect(live, mallory)
    join(a, alice)
    m.send({**mallory.sync_message(), "replicaId": alice.replica_id})
    assert m.close_code() == 1008
    assert heartbeat(a, alice) == [{"type": "heartbeat-response"}]


def test_a_client_that_reconnects_to_repeat_a_refused_frame_is_slowed_down(
    harness: Harness, live: Live
) -> None:
    alice, mallory = client(live, "alice"), client(live, "mallory")
    join(harness.connect(live, alice), alice)
    timings = []
    for _ in range(2):
        m = harness.connect(live, mallory)
        started = time.monotonic()
        m.send({**mallory.sync_message(), "replicaId": alice.replica_id})
        assert m.close_code() == 1008
        timings.append(time.monotonic() - started)
    assert timings[0] < 0.5 and timings[1] >= 0.9


# -- presence when sockets close ----------------------------------------------------------------


def _no_offline_for(s: Socket, replica: VerdantTestClient, seconds: float) -> None:
    """Keep ``replica`` alive with heartbeats and check nobody is reported gone meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not of_type(heartbeat(s, replica), "presence-offline")
        time.sleep(0.05)


def test_closing_the_last_socket_of_a_user_sends_exactly_one_presence_offline(
    harness: Harness,
) -> None:
    live = harness.serve({"VERDANT_PRESENCE_KEEPALIVE_SECONDS": 0.5})
    alice, bob_phone, bob_laptop = client(live, "alice"), client(live, "bob"), client(live, "bob")
    a = harness.connect(live, alice)
    join(a, alice)
    phone, laptop = harness.connect(live, bob_phone), harness.connect(live, bob_laptop)
    join(phone, bob_phone)
    join(laptop, bob_laptop)
    phone.close()
    # bob still has his laptop, which keeps itself alive: nobody is told he left
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        heartbeat(laptop, bob_laptop)
        assert not of_type(heartbeat(a, alice), "presence-offline")
    laptop.close()
    offline = [m for m in a.receive_until("presence-offline") if m["type"] == "presence-offline"]
    assert offline == [
        {"type": "presence-offline", "replicaId": bob_laptop.replica_id, "userId": "bob"}
    ]
    # and no second one once the keepalive of the closed replicas has run out
    _no_offline_for(a, alice, 1.0)


def test_a_stale_socket_closing_after_a_reconnect_does_not_report_the_replica_gone(
    harness: Harness, live: Live
) -> None:
    alice, bob = client(live, "alice"), client(live, "bob")
    a = harness.connect(live, alice)
    join(a, alice)
    old = harness.connect(live, bob)
    join(old, bob)
    new = harness.connect(live, bob)  # the same replica, reconnected before the old one closed
    join(new, bob)
    old.close()
    _no_offline_for(a, alice, 0.3)
    assert "bob" in sync_server(live[0]).presence.peers("lib")


def test_a_stale_sockets_disconnecting_handled_after_a_reconnect_is_ignored(
    harness: Harness, live: Live
) -> None:
    """Store 5.x sends ``disconnecting`` before it closes a socket; the server may handle it
    after the replica's first messages on its new socket (seen in CI: the peer stayed gone)."""
    alice, bob = client(live, "alice"), client(live, "bob")
    a = harness.connect(live, alice)
    join(a, alice)
    old = harness.connect(live, bob)
    join(old, bob)
    new = harness.connect(live, bob)
    join(new, bob)
    old.send({"type": "disconnecting", "replicaId": bob.replica_id, "reason": "closing"})
    old.close()
    _no_offline_for(a, alice, 0.3)
    assert "bob" in sync_server(live[0]).presence.peers("lib")
    new.send({"type": "disconnecting", "replicaId": bob.replica_id, "reason": "closing"})
    offline = [m for m in a.receive_until("presence-offline") if m["type"] == "presence-offline"]
    assert offline == [{"type": "presence-offline", "replicaId": bob.replica_id, "userId": "bob"}]


def test_the_server_pings_and_drops_a_socket_that_never_answers(harness: Harness) -> None:
    live = harness.serve({"VERDANT_WEBSOCKET_PING_SECONDS": 0.5})
    alice, ghost = client(live, "alice"), client(live, "ghost")
    a, g = harness.connect(live, alice), harness.connect(live, ghost)
    join(a, alice)
    join(g, ghost)
    # from now on the ghost reads nothing, so it never answers a ping, like a half-open socket;
    # alice keeps reading, and websocket-client answers her pings
    started = time.monotonic()
    offline = a.receive_until("presence-offline", timeout=5)[-1]
    assert offline["userId"] == "ghost"
    assert time.monotonic() - started < 3
    assert heartbeat(a, alice)[-1] == {"type": "heartbeat-response"}


# -- slow recipients ----------------------------------------------------------------------------


def test_a_recipient_that_stops_reading_does_not_delay_the_others(harness: Harness) -> None:
    live = harness.serve({"VERDANT_WEBSOCKET_QUEUE_SIZE": 8})
    alice, bob, stuck = client(live, "alice"), client(live, "bob"), client(live, "stuck")
    a, b = harness.connect(live, alice), harness.connect(live, bob)
    s = harness.connect(live, stuck, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    for sock, replica in ((a, alice), (b, bob), (s, stuck)):
        sock.send(replica.sync_message())
        sock.receive_until("sync-resp")
    # `stuck` reads nothing from here on, and every op-re to it is 100 KB: far more than the
    # socket buffers hold, so its writer blocks and its queue overflows
    payload = "x" * 100_000
    delays = []
    for n in range(100):
        op = alice.operation(f"items/{n}:x", {"op": "set", "name": "blob", "value": payload})
        sent = time.monotonic()
        a.send(alice.op_message(op))
        relayed = b.receive_until("op-re")[-1]
        delays.append(time.monotonic() - sent)
        assert relayed["operations"][0]["oid"] == f"items/{n}:x"
        a.receive_until("server-ack")
    assert max(delays) < 1.0, delays
    hub = sync_server(live[0]).hub
    wait_for(lambda: len(hub.members("lib")) == 2)


def test_presence_that_changed_since_a_sync_resp_is_sent_again_a_moment_later(
    harness: Harness, live: Live
) -> None:
    """Store clients apply a sync-resp's peerPresence after storing its operations, so a
    presence-changed right behind it can be overwritten; the server repeats the difference."""
    alice, bob = client(live, "alice"), client(live, "bob")
    a = harness.connect(live, alice)
    join(a, alice, {"at": "a"})
    b = harness.connect(live, bob)
    join(b, bob, {"at": "b"})
    first = [m for m in a.receive_until("presence-changed") if m["type"] == "presence-changed"]
    assert first[-1]["userInfo"]["id"] == "bob"
    again = a.receive_until("presence-changed", timeout=3)[-1]
    assert again["userInfo"] == first[-1]["userInfo"]


def test_nothing_is_repeated_when_presence_did_not_change_since_the_sync_resp(
    harness: Harness, live: Live
) -> None:
    alice = client(live, "alice")
    a = harness.connect(live, alice)
    join(a, alice, {"at": "a"})
    time.sleep(1.5)  # past the settle time: a repeat would be queued by now
    assert [m["type"] for m in heartbeat(a, alice)] == ["heartbeat-response"]
