"""What store 5.5.0 apps do beyond the 3.x scenarios (which also run against 5.5.0).

``list.set``, private documents, view presence, the store's default automatic transport
selection, and a library shared by a 5.5.0 and a 3.6.3 client (people upgrade one device
first). Each test starts its own drivers, since some need two store versions at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import LiveServer, close_driver, failed_in
from .driver import Client, NodeDriver, wait_until
from .test_consistency import server_snapshot
from .test_files import FileServer, file_id_of, file_spec, files  # noqa: F401 (a fixture)
from .test_pull_mode import make_doc, open_online
from .test_realtime_mode import open_realtime, wait_converged

pytestmark = [pytest.mark.interop, pytest.mark.slow]

STORE5 = "5.5.0"
TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _fast_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fold history right after writes (read by ``live_server`` when it starts)."""
    monkeypatch.setenv("VERDANT_COMPACTION_DELAY_SECONDS", "0.05")
    monkeypatch.setenv("VERDANT_GLOBAL_ACK_DELAY_SECONDS", "0.3")


@pytest.fixture
def drivers(
    driver_bundles: dict[str, Path], request: pytest.FixtureRequest
) -> Iterator[dict[str, NodeDriver]]:
    """One Node process per store version, opened on first use; traces printed on failure."""
    opened: dict[str, NodeDriver] = {}

    class Drivers(dict[str, NodeDriver]):
        def __missing__(self, version: str) -> NodeDriver:
            opened[version] = self[version] = NodeDriver(version)
            return opened[version]

    try:
        yield Drivers()
    finally:
        for driver in opened.values():
            close_driver(driver, failed_in(request))


def open_in(
    driver: NodeDriver, server: LiveServer, name: str, library: str, transport: str, **kw: Any
) -> Client:
    opener = open_online if transport == "pull" else open_realtime
    return opener(driver, server, name, kw.pop("user", name), library, **kw)


def unfolded(server: LiveServer, library: str) -> set[str]:
    """The documents (root oids) that still have operations in the server's history."""
    with contextlib.closing(
        sqlite3.connect(f"file:{server.database_file}?mode=ro", uri=True)
    ) as db:
        rows = db.execute("SELECT oid FROM operations WHERE libraryId = ?", (library,))
        return {oid.split(":")[0] for (oid,) in rows}


def compacted(server: LiveServer, library: str, clients: list[Client], *docs: str) -> None:
    """Wait until the server has folded every operation of ``docs`` into baselines.

    An operation is folded once every replica has acknowledged it and every replica's clock
    has passed it. A websocket client acknowledges its own operations only through the answer
    to its next sync (they are never sent back to it), so each client reconnects first; a
    replica's clock moves with its own writes, so each edits a document of its own now and then.
    """
    for client in clients:
        if client.status()["mode"] != "realtime":
            continue  # every poll's answer covers what the pull client sent
        client.stop()
        wait_until(partial(_disconnected, client), TIMEOUT, message=f"{client.name} stop")
        client.start()
        wait_until(partial(_connected, client), TIMEOUT, message=f"{client.name} start")

    def folded() -> bool:
        for client in clients:
            client.put({**make_doc(f"tick-{client.name}", 0), "title": str(time.monotonic())})
        return not unfolded(server, library) & {f"items/{doc}" for doc in docs}

    wait_until(folded, TIMEOUT, interval=0.5, message=lambda: f"{server.info(library)}")
    assert server.info(library)["quarantined"] == {}


@pytest.mark.parametrize("transport", ["pull", "realtime"])
def test_list_set_syncs_and_compacts(
    live_server: LiveServer, drivers: dict[str, NodeDriver], transport: str
) -> None:
    library = f"list-set-{transport}"
    alice = open_in(drivers[STORE5], live_server, "alice", library, transport)
    bob = open_in(drivers[STORE5], live_server, "bob", library, transport)
    alice.put({**make_doc("doc", 1), "tags": ["a", "b", "c"]})
    wait_converged([alice, bob])
    bob.list_set("doc-01", "tags", 1, "z")
    (doc,) = wait_until(
        lambda: d if (d := wait_converged([alice, bob]))[0]["tags"] == ["a", "z", "c"] else None,
        TIMEOUT,
        message="list.set did not reach alice",
    )
    compacted(live_server, library, [alice, bob], "doc-01")
    assert server_snapshot(live_server, library, "doc-01")["tags"] == ["a", "z", "c"]
    # a newcomer starts from the compacted baseline
    carol = open_in(drivers[STORE5], live_server, "carol", library, transport)
    wait_until(
        lambda: carol.get("doc-01") == doc, TIMEOUT, message="carol did not get the document"
    )


def test_a_private_document_is_seen_only_by_its_owner(
    live_server: LiveServer, drivers: dict[str, NodeDriver]
) -> None:
    library = "private"
    driver = drivers[STORE5]
    phone = open_in(driver, live_server, "phone", library, "realtime", user="alice")
    bob = open_in(driver, live_server, "bob", library, "realtime")
    phone.put(make_doc("secret", 1), private=True)
    phone.put(make_doc("open", 1))
    phone.set("secret-01", "title", "still secret")
    wait_until(lambda: [d["id"] for d in bob.read()] == ["open-01"], TIMEOUT, message="bob")
    compacted(live_server, library, [phone, bob], "secret-01", "open-01")
    # a second device of alice's (pull) and a newcomer (realtime) start from the baselines
    laptop = open_in(driver, live_server, "laptop", library, "pull", user="alice")
    carol = open_in(driver, live_server, "carol", library, "realtime")
    wait_until(
        lambda: {d["id"] for d in laptop.read()} >= {"open-01", "secret-01"},
        TIMEOUT,
        message="alice's laptop never got her private document",
    )
    assert laptop.get("secret-01")["title"] == "still secret"  # type: ignore[index]
    wait_until(lambda: carol.get("open-01") is not None, TIMEOUT, message="carol")
    phone.set("secret-01", "title", "edited")
    wait_until(
        lambda: laptop.get("secret-01")["title"] == "edited",  # type: ignore[index]
        TIMEOUT,
        message="the edit did not reach the laptop",
    )
    for client in (bob, carol):
        assert client.get("secret-01") is None
        assert "secret" not in str(client.trace(limit=4000))


def test_a_private_documents_file_reaches_only_its_owner(
    files: FileServer,  # noqa: F811 (the fixture imported above)
    drivers: dict[str, NodeDriver],
) -> None:
    library = "private-files"
    driver = drivers[STORE5]
    alice = open_in(driver, files.server, "alice", library, "pull")
    bob = open_in(driver, files.server, "bob", library, "pull")
    spec = file_spec(b"for alice only", "diary.txt", "text/plain")
    driver.call("put_attachment", name="alice", id="doc-1", file=spec, private=True)
    file_id = file_id_of(alice, "doc-1")

    def info_for(user: str) -> int:
        token = files.token(library, user)
        response = requests.get(
            f"{files.server.sync_url}/files/{file_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return response.status_code

    wait_until(lambda: info_for("alice") == 200, TIMEOUT, message="the upload did not arrive")
    assert info_for("bob") == 404
    bob.put(make_doc("after", 1))  # bob has synced past alice's private document
    wait_until(lambda: alice.get("after-01") is not None, TIMEOUT, message="alice misses bob")
    assert driver.call("attachment_file", name="bob", id="doc-1") is None
    assert file_id not in str(bob.trace(limit=4000))


def test_view_presence(live_server: LiveServer, drivers: dict[str, NodeDriver]) -> None:
    library = "views"
    driver = drivers[STORE5]
    alice = open_in(driver, live_server, "alice", library, "realtime")
    bob = open_in(driver, live_server, "bob", library, "realtime")
    alice.set_view("list-1")
    bob.set_view("list-1")
    wait_until(lambda: alice.view_peers() == ["bob"], TIMEOUT, message="alice misses bob")
    bob.set_view("list-2")
    wait_until(lambda: alice.view_peers() == [], TIMEOUT, message="bob did not leave the view")
    wait_until(lambda: bob.view_peers() == [], TIMEOUT, message="bob sees alice elsewhere")
    assert "Error" not in driver.stderr_text()


def test_the_default_automatic_transport_selection(
    live_server: LiveServer, drivers: dict[str, NodeDriver]
) -> None:
    """As real apps run: clients start with pull and move to realtime when peers are present."""
    library = "automatic"
    driver = drivers[STORE5]
    alice, bob = (
        open_in(driver, live_server, name, library, "pull", automatic_transport_selection=None)
        for name in ("alice", "bob")
    )
    for client in (alice, bob):
        wait_until(
            lambda c=client: c.status()["mode"] == "realtime",  # type: ignore[misc]
            TIMEOUT,
            message=f"{client.name} never moved to realtime",
        )
    alice.put(make_doc("doc", 1))
    bob.put(make_doc("doc", 2))
    assert [d["id"] for d in wait_converged([alice, bob])] == ["doc-01", "doc-02"]
    errors = [line for line in driver.stderr_text().splitlines() if "rror" in line]
    assert errors == []


def test_a_library_shared_by_store_5_and_store_3_converges(
    live_server: LiveServer, drivers: dict[str, NodeDriver]
) -> None:
    library = "mixed"
    new = open_in(drivers[STORE5], live_server, "new", library, "realtime", user="alice")
    old = open_in(drivers["3.6.3"], live_server, "old", library, "pull", user="bob")
    new.put(make_doc("new", 1))
    old.put(make_doc("old", 1))
    wait_converged([new, old])
    old.push("new-01", "tags", "from-3.6.3")
    new.set("old-01", ["meta", "nested", "flag"], True)
    new.remove_from_list("new-01", "tags", "common")
    docs = wait_converged([new, old])
    assert [d["id"] for d in docs] == ["new-01", "old-01"]
    docs = [doc for doc in docs if doc["id"] in ("new-01", "old-01")]
    assert docs[0]["tags"] == ["tag-1", "from-3.6.3"]
    assert docs[1]["meta"]["nested"]["flag"] is True
    compacted(live_server, library, [new, old], "new-01", "old-01")
    for doc in docs:
        assert server_snapshot(live_server, library, doc["id"]) == doc
    # each sees the other in presence
    wait_until(lambda: "bob" in new.presence()["peers"], TIMEOUT, message="new misses bob")
    wait_until(lambda: "alice" in old.presence()["peers"], TIMEOUT, message="old misses alice")


def _connected(client: Client) -> bool:
    return bool(client.is_connected)


def _disconnected(client: Client) -> bool:
    return not client.is_connected


@pytest.mark.parametrize("version", [STORE5, "3.6.3", "3.2.1"])
def test_a_newcomer_gets_documents_nobody_edited_as_baselines_and_edits_them(
    live_server: LiveServer, drivers: dict[str, NodeDriver], version: str
) -> None:
    """docs/protocol.md, "Initial documents as baselines": the same state, and edits on it."""
    library = f"fresh-{version.replace('.', '')}"
    writer = open_in(drivers["3.6.3"], live_server, "writer", library, "realtime", user="alice")
    for n in (1, 2, 3):
        writer.put(make_doc("w", n))
    # one initialize per object: the document, its tags, its meta and meta.nested
    wait_until(
        lambda: live_server.info(library)["latestServerOrder"] >= 12,
        TIMEOUT,
        message=lambda: f"the writer did not upload: {live_server.info(library)}",
    )
    newcomer = open_in(drivers[version], live_server, "newcomer", library, "realtime", user="bob")
    answers = [
        message
        for entry in newcomer.trace(limit=1000)
        if entry.get("kind") == "ws-in"
        for message in entry.get("response") or []
        if message.get("type") == "sync-resp"
    ]
    as_baselines = {b["oid"].split(":")[0] for b in answers[0]["baselines"]}
    as_operations = {op["oid"].split(":")[0] for op in answers[0]["operations"]}
    # the newest document stays operations, so the newcomer's clock passes every timestamp
    assert (as_baselines, as_operations) == ({"items/w-01", "items/w-02"}, {"items/w-03"})
    wait_converged([writer, newcomer])
    newcomer.set("w-01", ["meta", "nested", "flag"], True)
    newcomer.push("w-02", "tags", "from-the-newcomer")
    writer.set("w-03", ["title"], "edited by the writer")
    docs = wait_converged([writer, newcomer])
    assert [doc["id"] for doc in docs] == ["w-01", "w-02", "w-03"]
    assert docs[0]["meta"]["nested"]["flag"] is True
    assert docs[1]["tags"] == ["tag-2", "common", "from-the-newcomer"]
    assert docs[2]["title"] == "edited by the writer"
