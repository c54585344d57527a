"""The ``newcomer`` workload: real ``@verdant-web/store`` 3.6.3 clients, not the load generator.

    python -m benchmarks.newcomer --base http://127.0.0.1:PORT [--documents 2000] [--batch 50]

The runner starts it pinned to the generator's CPU, as it does the Node load generator, and reads
the JSON line it prints last. It drives the interop tests' Node driver (tests/interop/driver.py),
so what is timed includes the real client's own work (fake IndexedDB, rebuilding documents), as a
user would see it:

1. a writer replica puts ``documents`` documents while its sync is stopped (offline), then
   starts it over the websocket transport; ``uploadSeconds`` runs until its first ``sync-resp``,
   which both servers send only once they have stored the ``sync`` it answers, and that ``sync``
   carries the writer's whole history (``writerSyncs``), so the time needs no server endpoint;
2. a newcomer (a new user on an empty device) then starts over the websocket;
   ``newcomerSyncSeconds`` runs until its first ``sync-resp`` has arrived, ``newcomerSeconds``
   until it holds every document.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from typing import Any

from tests.interop.conftest import driver_bundles
from tests.interop.driver import Client, NodeDriver, wait_until

STORE_VERSION = "3.6.3"
LIBRARY = "newcomer"
# Polling the driver is how completion is seen: its interval bounds the timing's resolution.
POLL_SECONDS = 0.02


def document(number: int) -> dict[str, Any]:
    """The interop tests' large-library document (test_consistency.py), one field set each."""
    return {
        "id": f"doc-{number:05d}",
        "title": f"t{number}",
        "done": False,
        "tags": [],
        "meta": {"count": number, "note": "", "nested": {"flag": False}},
    }


def open_offline(driver: NodeDriver, base: str, user: str) -> Client:
    """A websocket client of its own user and device whose sync has not started."""
    return driver.open_client(
        user,
        auth_url=f"{base}/auth/{LIBRARY}?user={user}",
        user=user,
        library=LIBRARY,
        transport="realtime",
        start=False,
    )


def first_sync_response(client: Client, timeout: float) -> float:
    """Start ``client``'s sync; seconds until its first ``sync-resp`` has arrived."""
    started = time.monotonic()
    client.start()
    wait_until(
        lambda: client.status()["syncResponses"] >= 1,
        timeout,
        interval=POLL_SECONDS,
        message=f"{client.name} got no sync-resp",
    )
    return time.monotonic() - started


def sent_syncs(client: Client) -> list[dict[str, int]]:
    """What each ``sync`` message of ``client`` carried. A 3.x replica that never synced sends
    its offline history folded into baselines, all in its first ``sync``: else ``uploadSeconds``
    would end before the server held everything."""
    return [
        {key: len(message.get(key) or []) for key in ("operations", "baselines")}
        for entry in client.trace(limit=4000)
        if entry.get("kind") == "ws-out"
        for message in entry.get("request") or []
        if isinstance(message, dict) and message.get("type") == "sync"
    ]


def run(base: str, documents: int, batch: int, timeout: float) -> dict[str, Any]:
    # The interop suite's own bundle build (the fixture's function): only if missing or stale.
    inspect.unwrap(driver_bundles)()
    with NodeDriver(STORE_VERSION) as driver:
        writer = open_offline(driver, base, "writer")
        started = time.monotonic()
        for first in range(0, documents, batch):
            writer.put_many([document(n) for n in range(first, min(first + batch, documents))])
        offline_write_seconds = time.monotonic() - started

        upload_seconds = first_sync_response(writer, timeout)
        writer_syncs = sent_syncs(writer)
        if sum(writer_syncs[0].values()) < documents:
            raise RuntimeError(f"the writer's first sync did not carry its history: {writer_syncs}")

        newcomer = open_offline(driver, base, "newcomer")
        started = time.monotonic()
        newcomer_sync_seconds = first_sync_response(newcomer, timeout)
        wait_until(
            lambda: newcomer.count() >= documents,
            timeout,
            interval=POLL_SECONDS,
            message=f"the newcomer did not get all {documents} documents",
        )
        newcomer_seconds = time.monotonic() - started
        held = newcomer.count()
        if held != documents:
            raise RuntimeError(f"the newcomer holds {held} documents, {documents} were written")
        return {
            "workload": "newcomer",
            "store": STORE_VERSION,
            "documents": documents,
            "offlineWriteSeconds": offline_write_seconds,
            "writerSyncs": writer_syncs,
            "uploadSeconds": upload_seconds,
            "newcomerSyncSeconds": newcomer_sync_seconds,
            "newcomerSeconds": newcomer_seconds,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.newcomer", description=__doc__)
    parser.add_argument("--base", required=True, help="the server, http://HOST:PORT")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50, help="documents per driver command")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each wait")
    args = parser.parse_args(argv)
    result = run(args.base.rstrip("/"), args.documents, args.batch, args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
