"""A computed global ack waits before it goes out (docs/protocol.md, "The global ack").

The rule itself (``flask_verdant.global_ack``), then a served app: the value goes out by itself
once it has waited, and history is compacted after it. The real client's reason for the wait is
in tests/interop/test_late_edits.py.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flask_verdant.global_ack import GlobalAck, Waiting, advance
from flask_verdant.testing import VerdantTestClient

from .realtime_helpers import Harness, Live, Socket, wait_for
from .test_sync_protocol import info, initialize
from .test_websocket import client, join

DELAY = 1000


def test_with_no_delay_a_new_value_is_published_at_once() -> None:
    state = advance(GlobalAck(None), "t1", 0, 0)
    assert state == GlobalAck("t1")
    assert advance(state, "t2", 0, 0) == GlobalAck("t2")


def test_a_value_is_published_once_it_has_stood_for_the_delay() -> None:
    state = advance(GlobalAck("t0"), "t1", 10_000, DELAY)
    assert state == GlobalAck("t0", (Waiting("t1", 10_000),))
    assert advance(state, None, 10_999, DELAY).published == "t0"
    assert advance(state, None, 11_000, DELAY) == GlobalAck("t1")


def test_a_lower_or_equal_value_changes_nothing() -> None:
    state = GlobalAck("t5", (Waiting("t7", 0),))
    assert advance(state, "t3", 1, DELAY) == state
    assert advance(state, "t7", 1, DELAY) == state
    assert advance(GlobalAck("t5"), "t5", 1, DELAY) == GlobalAck("t5")


def test_two_values_wait_at_most_and_a_newer_one_replaces_the_second() -> None:
    state = advance(GlobalAck(None), "t1", 0, DELAY)
    state = advance(state, "t2", 100, DELAY)
    state = advance(state, "t3", 200, DELAY)
    assert state.waiting == (Waiting("t1", 0), Waiting("t3", 200))
    assert advance(state, None, 1000, DELAY) == GlobalAck("t1", (Waiting("t3", 200),))
    assert advance(state, None, 1200, DELAY) == GlobalAck("t3")


@given(
    st.lists(
        st.tuples(st.integers(0, 3 * DELAY), st.none() | st.integers(0, 60)),
        max_size=60,
    )
)
def test_published_values_rise_have_stood_and_keep_up(
    calls: list[tuple[int, int | None]],
) -> None:
    """Published values only rise and each was computed ``DELAY`` before; a value computed at
    ``s`` is published (or passed) by any call at ``s + 2 * DELAY`` or later."""
    state = GlobalAck(None)
    now = 0
    computed_at: dict[str, int] = {}
    for step, value in calls:
        now += step
        computed = None if value is None else f"t{value:03d}"
        before = state
        state = advance(state, computed, now, DELAY)
        if computed is not None:
            computed_at.setdefault(computed, now)
        if state.published != before.published:
            assert state.published is not None
            assert before.published is None or state.published > before.published
            assert now - computed_at[state.published] >= DELAY
        assert len(state.waiting) <= 2
        for timestamp, at in computed_at.items():
            if now >= at + 2 * DELAY:
                assert state.published is not None and state.published >= timestamp


def _ack(replica_id: str, timestamp: str) -> dict[str, Any]:
    return {"type": "ack", "replicaId": replica_id, "timestamp": timestamp}


def _alice_and_bob(
    harness: Harness, delay: float
) -> tuple[Live, VerdantTestClient, VerdantTestClient, Socket, Socket]:
    """A served app with that global ack delay, and two replicas joined over websockets."""
    live = harness.serve({"VERDANT_GLOBAL_ACK_DELAY_SECONDS": delay})
    alice, bob = client(live, "alice"), client(live, "bob")
    a, b = harness.connect(live, alice), harness.connect(live, bob)
    join(a, alice)
    join(b, bob)
    return live, alice, bob, a, b


def test_the_global_ack_goes_out_by_itself_once_it_has_waited_and_history_folds_after(
    harness: Harness,
) -> None:
    delay = 0.5
    live, alice, bob, a, b = _alice_and_bob(harness, delay)
    first, second = initialize(alice, "x", title="x"), initialize(bob, "y", title="y")
    while second["timestamp"] <= first["timestamp"]:  # two clocks: bob's edit must be newer
        second = initialize(bob, "y", title="y")
    sent = time.monotonic()
    a.send(alice.op_message(first))
    assert not [m for m in a.receive_until("server-ack") if m["type"] == "global-ack"]
    b.receive_until("op-re")
    b.send(bob.op_message(second))
    a.receive_until("op-re")
    a.send(_ack(alice.replica_id, second["timestamp"]))
    b.send(_ack(bob.replica_id, first["timestamp"]))
    # Nothing else is sent: the server publishes the value when it has waited.
    published = [b.receive_until("global-ack", timeout=delay + 5)[-1]["timestamp"]]
    assert time.monotonic() - sent >= delay
    while published[-1] != second["timestamp"]:
        published.append(b.receive_until("global-ack", timeout=2 * delay + 5)[-1]["timestamp"])
    # Alice's operation alone may have made a first value (bob had acknowledged nothing yet).
    assert published in ([second["timestamp"]], [first["timestamp"], second["timestamp"]])
    assert info(live[0])["globalAck"] == second["timestamp"]
    # Then what every replica holds below it is folded.
    wait_for(lambda: info(live[0])["operationsCount"] == 1 and info(live[0])["baselinesCount"])


def test_an_answer_carries_only_the_published_global_ack(harness: Harness) -> None:
    live, alice, bob, a, b = _alice_and_bob(harness, 60)
    operation = initialize(alice, "x", title="x")
    a.send(alice.op_message(operation))
    b.receive_until("op-re")
    b.send(_ack(bob.replica_id, operation["timestamp"]))
    wait_for(
        lambda: any(
            r["ackedLogicalTime"] == operation["timestamp"]
            for r in info(live[0])["replicas"]
            if r["id"] == bob.replica_id
        )
    )
    carol = client(live, "carol")
    (answer,) = [m for m in carol.sync() if m["type"] == "sync-resp"]
    assert "globalAckTimestamp" not in answer
    assert info(live[0])["globalAck"] is None
