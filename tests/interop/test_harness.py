"""Self-tests of the interop harness: the Node driver and its Python side, without a server."""

from __future__ import annotations

import time

import pytest

from .driver import DriverError, NodeDriver, wait_until

pytestmark = [pytest.mark.interop]

# never contacted: these clients do not start syncing
OFFLINE_AUTH_URL = "http://127.0.0.1:9/auth/none?user=nobody"


def open_offline(driver: NodeDriver, name: str, device: str) -> None:
    driver.open_client(name, auth_url=OFFLINE_AUTH_URL, device=device, start=False)


def test_driver_reports_its_store_version(node_driver: NodeDriver, store_version: str) -> None:
    assert node_driver.call("hello")["storeVersion"] == store_version


def test_a_failing_command_is_an_error_reply_not_a_crash(node_driver: NodeDriver) -> None:
    with pytest.raises(DriverError, match="unknown command"):
        node_driver.call("no-such-command")
    with pytest.raises(DriverError, match="no open client"):
        node_driver.call("read", name="ghost")
    open_offline(node_driver, "a", "device-a")
    a = node_driver.clients["a"]
    with pytest.raises(DriverError, match="no document"):
        a.set("missing", "title", "x")
    with pytest.raises(DriverError, match="already open"):
        open_offline(node_driver, "a", "device-a")
    # still alive and working
    a.put({"id": "x", "title": "t", "done": False, "tags": []})
    assert [d["id"] for d in a.read()] == ["x"]


def test_nested_edits_and_deep_snapshots(node_driver: NodeDriver) -> None:
    open_offline(node_driver, "a", "device-a")
    a = node_driver.clients["a"]
    a.put({"id": "b", "title": "second", "done": False, "tags": []})
    a.put({"id": "a", "title": "first", "done": True, "tags": ["x"]})
    a.set("a", "meta.nested.flag", True)
    a.set("a", ["meta", "count"], 3)
    a.push("a", "tags", "y")
    a.update("b", {"done": True})
    a.remove_from_list("a", "tags", "x")
    assert a.read() == [
        {
            "id": "a",
            "title": "first",
            "done": True,
            "tags": ["y"],
            "meta": {"count": 3, "note": "", "nested": {"flag": True}},
        },
        {
            "id": "b",
            "title": "second",
            "done": True,
            "tags": [],
            "meta": {"count": 0, "note": "", "nested": {"flag": False}},
        },
    ]
    a.delete("b")
    assert [d["id"] for d in a.read()] == ["a"]
    assert a.get("b") is None


def test_same_device_key_reopens_the_same_replica(node_driver: NodeDriver) -> None:
    open_offline(node_driver, "first", "laptop")
    first = node_driver.clients["first"]
    replica = first.status()["replicaId"]
    first.put({"id": "kept", "title": "t", "done": False, "tags": []})
    first.close()

    open_offline(node_driver, "again", "laptop")
    again = node_driver.clients["again"]
    assert again.status()["replicaId"] == replica
    assert [d["id"] for d in again.read()] == ["kept"]

    open_offline(node_driver, "other", "phone")
    other = node_driver.clients["other"]
    assert other.status()["replicaId"] != replica
    assert other.read() == []


def test_read_stored_loads_what_the_client_stored(
    node_driver: NodeDriver, store_version: str
) -> None:
    """What the scale-out tests compare when entity views differ: the same documents as the
    view when nothing went wrong (edits and deletes included), and none the client lacks."""
    open_offline(node_driver, "a", "device-a")
    a = node_driver.clients["a"]
    if store_version.startswith("5."):
        with pytest.raises(DriverError, match="store 3.x clients only"):
            a.read_stored()
        return
    a.put({"id": "kept", "title": "t", "done": False, "tags": ["x"]})
    a.put({"id": "gone", "title": "g", "done": False, "tags": []})
    a.set("kept", "meta.nested.flag", True)
    a.push("kept", "tags", "y")
    a.delete("gone")
    # the store writes local changes to storage in batches, a moment after the view has them
    wait_until(lambda: a.read_stored() == a.read(), 5, message=lambda: f"{a.read_stored()}")
    assert [(d["id"], d["tags"], d["meta"]["nested"]) for d in a.read_stored()] == [
        ("kept", ["x", "y"], {"flag": True})
    ]

    open_offline(node_driver, "b", "device-b")
    assert node_driver.clients["b"].read_stored() == []


def test_wait_until_returns_the_value_or_fails_with_the_message() -> None:
    start = time.monotonic()
    assert wait_until(lambda: time.monotonic() - start > 0.2 and "done", 5) == "done"
    with pytest.raises(AssertionError, match="never true"):
        wait_until(lambda: False, 0.3, message=lambda: "never true")
