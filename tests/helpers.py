"""Helpers shared by the unit tests."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask_verdant.testing import VerdantTestClient, of_type

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


# Bookkeeping of the serving processes (flask_verdant.coordination), not data: a worker beats
# there about once a second whatever the requests do.
_PROCESS_TABLES = ("workers",)


def dump_database(path: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every data table, to show that a refused request changed nothing."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in tables
            if table not in _PROCESS_TABLES
        }
    finally:
        connection.close()


def catch_up(*clients: VerdantTestClient) -> None:
    """Each replica pulls, acknowledges what it got and moves its clock past it."""
    for client in clients:
        (response,) = of_type(client.sync(since="known", resync_all=False), "sync-resp")
        if "ackThisNonce" in response:
            client.ack(nonce=response["ackThisNonce"])
        client.ack(timestamp=client.clock.now())
