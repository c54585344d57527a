"""The sqlite connection pool: bounded, and free of greenlet switches when a connection is free
(every message takes two connections under its library's lock; BENCHMARKS.md)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from flask_verdant.storage.pool import ConnectionPool


def test_a_caller_waits_for_a_returned_connection_when_all_are_taken() -> None:
    pool = ConnectionPool(lambda: sqlite3.connect(":memory:", check_same_thread=False), 1)
    got: list[sqlite3.Connection] = []
    with pool.connection() as first:
        waiter = threading.Thread(target=lambda: got.append(pool.connection().__enter__()))
        waiter.start()
        time.sleep(0.05)
        assert got == []
    waiter.join(5)
    assert got == [first]


def test_waiting_too_long_for_a_connection_fails() -> None:
    pool = ConnectionPool(lambda: sqlite3.connect(":memory:"), 1, timeout=0.05)
    with pool.connection(), pytest.raises(TimeoutError), pool.connection():
        pass


SWITCHES = """
from gevent import monkey; monkey.patch_all()
import gevent, greenlet, sqlite3
from flask_verdant.storage.pool import ConnectionPool
pool = ConnectionPool(lambda: sqlite3.connect(":memory:"), 2)
def busy():
    while True:
        gevent.sleep(0)
gevent.spawn(busy)
gevent.sleep(0)
switches = []
greenlet.settrace(lambda event, args: switches.append(event))
for _ in range(50):
    with pool.connection() as connection:
        connection.execute("SELECT 1")
greenlet.settrace(None)
print(len(switches))
"""


def test_a_free_connection_is_taken_and_returned_without_yielding_under_gevent() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SWITCHES], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0"
