"""Edits a 3.x pull client makes before its first sync answer must still reach every peer.

The pull transport drops ``op`` messages until it has seen a ``sync-resp`` and folds the dropped
operations into a local baseline. With the official server this scenario loses items in about
half the runs; the server compensates, so it must pass every time. See docs/protocol.md,
"Pull clients and early edits (R1-R7)".
"""

from __future__ import annotations

import pytest

from .conftest import LiveServer
from .driver import NodeDriver
from .test_pull_mode import PULL_INTERVAL_MS, as_list, make_doc, wait_converged

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.mark.parametrize("round", range(3))
def test_writes_right_after_opening_reach_the_other_pull_client(
    live_server: LiveServer, node_driver: NodeDriver, round: int
) -> None:
    library = f"race-{round}"
    writer = node_driver.open_client(
        "writer",
        auth_url=live_server.auth_url(library, "writer"),
        user="writer",
        library=library,
        transport="pull",
        pull_interval=PULL_INTERVAL_MS,
    )
    reader = node_driver.open_client(
        "reader",
        auth_url=live_server.auth_url(library, "reader"),
        user="reader",
        library=library,
        transport="pull",
        pull_interval=PULL_INTERVAL_MS,
    )
    docs = [make_doc("early", i) for i in range(20)]
    for doc in docs:
        writer.put(doc)
    expected = {doc["id"]: doc for doc in docs}
    assert wait_converged([writer, reader], expected, timeout=30) == as_list(expected)
