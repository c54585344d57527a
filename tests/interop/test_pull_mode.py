"""Pull-mode (HTTP polling) interop scenarios with the real ``@verdant-web/store`` clients.

Every scenario runs once per store version against a fresh live server. Clients poll every
300 ms. Writers wait until they are online before writing (see docs/protocol.md, R1-R7: a 3.x
pull client drops edits made before its first sync answer). All waits are conditions with
deadlines, and replicas are compared on their full deep state.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from .conftest import LiveServer
from .driver import Client, NodeDriver, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.slow]

PULL_INTERVAL_MS = 300
CONVERGE_TIMEOUT = 30.0

Doc = dict[str, Any]
State = dict[str, Doc]


# -- helpers ---------------------------------------------------------------------------------
def make_doc(prefix: str, i: int) -> Doc:
    return {
        "id": f"{prefix}-{i:02d}",
        "title": f"{prefix} item {i}",
        "done": i % 2 == 0,
        "tags": [f"tag-{i}", "common"],
        "meta": {"count": i, "note": f"note {i}", "nested": {"flag": i % 3 == 0}},
    }


def as_list(state: State) -> list[Doc]:
    return [state[key] for key in sorted(state)]


def describe(clients: list[Client], expected: State | None) -> str:
    """A readable difference between the clients' states (and the expected state)."""
    states = {c.name: {d["id"]: d for d in c.read()} for c in clients}
    reference_name, reference = (
        ("expected", expected) if expected is not None else next(iter(states.items()))
    )
    lines = []
    for name, state in states.items():
        if name == reference_name:
            continue
        missing = sorted(set(reference) - set(state))
        extra = sorted(set(state) - set(reference))
        differing = sorted(k for k in set(state) & set(reference) if state[k] != reference[k])
        lines.append(
            f"{name} vs {reference_name}: {len(state)} docs; missing {missing}; extra {extra}; "
            f"differing {differing}"
        )
        for key in differing[:5]:
            lines.append(f"    {key}: {name}={json.dumps(state[key])}")
            lines.append(f"    {key}: {reference_name}={json.dumps(reference[key])}")
    for c in clients:
        lines.append(f"{c.name} status: {c.status()}")
    return "\n".join(lines)


def wait_converged(
    clients: list[Client], expected: State | None = None, timeout: float = CONVERGE_TIMEOUT
) -> list[Doc]:
    """Wait until every client holds exactly ``expected`` (or, without it, the same state)."""
    target = as_list(expected) if expected is not None else None

    def converged() -> list[Doc] | None:
        states = [c.read() for c in clients]
        first = target if target is not None else states[0]
        return first if all(s == first for s in states) else None

    result = wait_until(
        converged,
        timeout,
        message=lambda: "replicas did not converge\n" + describe(clients, expected),
    )
    return result


def open_online(
    driver: NodeDriver, server: LiveServer, name: str, user: str, library: str, **kwargs: Any
) -> Client:
    client = driver.open_client(
        name,
        auth_url=server.auth_url(library, user),
        user=user,
        library=library,
        transport="pull",
        pull_interval=PULL_INTERVAL_MS,
        **kwargs,
    )
    client.wait_online()
    return client


def wait_idle(client: Client, timeout: float = 10.0) -> None:
    """After ``stop()``: wait until no sync request of this client is in flight."""
    wait_until(
        lambda: client.status()["inflight"] == 0,
        timeout,
        message=f"{client.name} still has a request in flight",
    )


# Local model of the edits, mirrored on the clients.
def edit_set(state: State, client: Client, doc_id: str, path: str, value: Any) -> None:
    client.set(doc_id, path, value)
    node: Any = state[doc_id]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


def edit_push(state: State, client: Client, doc_id: str, path: str, value: Any) -> None:
    client.push(doc_id, path, value)
    node: Any = state[doc_id]
    for key in path.split("."):
        node = node[key]
    node.append(value)


def edit_update(state: State, client: Client, doc_id: str, fields: dict[str, Any]) -> None:
    client.update(doc_id, fields)
    state[doc_id].update(copy.deepcopy(fields))


def edit_put(state: State, client: Client, doc: Doc) -> None:
    client.put(doc)
    state[doc["id"]] = copy.deepcopy(doc)


def edit_delete(state: State, client: Client, doc_id: str) -> None:
    client.delete(doc_id)
    del state[doc_id]


# -- scenarios -------------------------------------------------------------------------------
def test_two_replicas_converge_both_ways(live_server: LiveServer, node_driver: NodeDriver) -> None:
    """Two users converge on 20 documents; edits of fields, lists and nested objects flow
    from A to B and from B to A."""
    library = "converge"
    a = open_online(node_driver, live_server, "a", "alice", library)
    b = open_online(node_driver, live_server, "b", "bob", library)

    state: State = {}
    for i in range(20):
        edit_put(state, a, make_doc("doc", i))
    wait_converged([a, b], state)

    # B edits what A created
    for i in range(0, 20, 3):
        edit_set(state, b, f"doc-{i:02d}", "title", f"retitled by bob {i}")
        edit_push(state, b, f"doc-{i:02d}", "tags", "from-bob")
        edit_set(
            state,
            b,
            f"doc-{i:02d}",
            "meta.nested.flag",
            not state[f"doc-{i:02d}"]["meta"]["nested"]["flag"],
        )
        edit_set(state, b, f"doc-{i:02d}", "meta.count", 100 + i)
    edit_update(state, b, "doc-01", {"done": True, "title": "updated by bob"})
    edit_put(state, b, make_doc("bob", 1))
    wait_converged([a, b], state)

    # and A edits back, including what B created
    for i in range(1, 20, 4):
        edit_set(state, a, f"doc-{i:02d}", "meta.note", f"alice note {i}")
        edit_push(state, a, f"doc-{i:02d}", "tags", "from-alice")
    edit_push(state, a, "bob-01", "tags", "alice-was-here")
    edit_set(state, a, "bob-01", "meta.nested.flag", True)
    edit_delete(state, a, "doc-19")
    wait_converged([a, b], state)


def test_offline_edits_merge_after_reconnect(
    live_server: LiveServer, node_driver: NodeDriver
) -> None:
    """Both replicas go offline, edit different fields and documents, come back, and converge
    on the merged state."""
    library = "offline"
    a = open_online(node_driver, live_server, "a", "alice", library)
    b = open_online(node_driver, live_server, "b", "bob", library)

    state: State = {}
    for i in range(10):
        edit_put(state, a, make_doc("doc", i))
    wait_converged([a, b], state)

    a.stop()
    b.stop()
    wait_idle(a)
    wait_idle(b)

    # A, offline: titles and lists of 0-4, a new document
    for i in range(5):
        edit_set(state, a, f"doc-{i:02d}", "title", f"offline alice {i}")
        edit_push(state, a, f"doc-{i:02d}", "tags", "offline-a")
    edit_put(state, a, make_doc("alice-new", 0))
    # B, offline: nested fields and flags of 5-9, another field of doc-00, a deletion, a new doc
    for i in range(5, 10):
        edit_set(state, b, f"doc-{i:02d}", "meta.nested.flag", True)
        edit_set(state, b, f"doc-{i:02d}", "meta.count", 500 + i)
        edit_update(state, b, f"doc-{i:02d}", {"done": True})
    edit_set(state, b, "doc-00", "meta.note", "offline bob note")
    edit_delete(state, b, "doc-08")
    edit_put(state, b, make_doc("bob-new", 0))

    # offline means offline: neither sees the other's edits yet
    assert a.get("bob-new-00") is None
    assert b.get("alice-new-00") is None
    assert b.get("doc-01")["title"] == "doc item 1"  # type: ignore[index]

    a.start()
    b.start()
    wait_converged([a, b], state)


def test_new_replica_joins_non_empty_library(
    live_server: LiveServer, node_driver: NodeDriver
) -> None:
    """A replica joining after data exists receives all of it, then syncs normally.

    The deleted doc-07 is the trap: a compaction between the newcomer's first two syncs can
    fold its creation but not its deletion (docs/protocol.md, "Baselines after a reset").
    """
    library = "join"
    a = open_online(node_driver, live_server, "a", "alice", library)
    b = open_online(node_driver, live_server, "b", "bob", library)

    state: State = {}
    for i in range(20):
        edit_put(state, a, make_doc("doc", i))
    for i in range(0, 20, 5):
        edit_push(state, a, f"doc-{i:02d}", "tags", "edited")
        edit_set(state, a, f"doc-{i:02d}", "meta.nested.flag", True)
    edit_delete(state, a, "doc-07")
    # B confirms the server holds everything before the newcomer arrives
    wait_converged([a, b], state)

    c = open_online(node_driver, live_server, "c", "carol", library)
    wait_converged([a, b, c], state)

    # the newcomer is a full member: its edits reach the others
    edit_set(state, c, "doc-03", "title", "carol was here")
    edit_push(state, c, "doc-03", "tags", "from-carol")
    edit_put(state, c, make_doc("carol", 0))
    wait_converged([a, b, c], state)


def _max_seq(driver: NodeDriver) -> int:
    entries = driver.trace(limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def _got_message(driver: NodeDriver, clients: list[Client], since_seq: int, kind: str) -> bool:
    for client in clients:
        for entry in client.trace(limit=500):
            if entry["seq"] <= since_seq or entry.get("status") != 200:
                continue
            response = entry.get("response")
            if isinstance(response, list) and any(
                isinstance(m, dict) and m.get("type") == kind for m in response
            ):
                return True
    return False


def test_evicted_library_is_restored_by_connected_replica(
    live_server: LiveServer, node_driver: NodeDriver
) -> None:
    """After the library is evicted on the server, a connected replica is asked for its full
    history (need-since), re-uploads it, and a newcomer then receives everything."""
    library = "evict"
    a = open_online(node_driver, live_server, "a", "alice", library)
    b = open_online(node_driver, live_server, "b", "bob", library)

    state: State = {}
    for i in range(10):
        edit_put(state, a, make_doc("doc", i))
    wait_converged([a, b], state)
    edit_push(state, b, "doc-02", "tags", "from-bob")
    edit_set(state, b, "doc-04", "meta.nested.flag", True)
    wait_converged([a, b], state)

    mark = _max_seq(node_driver)
    live_server.evict(library)

    # a connected replica is told to send its whole history...
    wait_until(
        lambda: _got_message(node_driver, [a, b], mark, "need-since"),
        CONVERGE_TIMEOUT,
        message="no replica received need-since after the eviction",
    )
    # ...and the server holds the library again
    wait_until(
        lambda: (info := live_server.info(library))["operationsCount"] + info["baselinesCount"] > 0,
        CONVERGE_TIMEOUT,
        message=lambda: f"library not restored: {live_server.info(library)}",
    )

    c = open_online(node_driver, live_server, "c", "carol", library)
    wait_converged([a, b, c], state)

    # and everything keeps syncing afterwards
    edit_set(state, a, "doc-05", "title", "after eviction")
    edit_push(state, c, "doc-06", "tags", "from-carol")
    wait_converged([a, b, c], state)
