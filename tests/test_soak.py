"""A soak test: clients join, write, go offline, reconnect and get evicted, for a while.

Realtime clients on websockets and pull clients over HTTP write to one library while an admin
evicts users now and then. At the end nothing acknowledged is missing from what a newcomer
receives, the server holds no connection or presence of the departed clients, and the Python
heap (``tracemalloc``) is as large as after the warm-up, within a small bound. Resident memory
is reported but only loosely bounded: sqlite's page caches and the allocator's per-thread arenas
grow with the database and the thread count, not with time. ``VERDANT_SOAK_SECONDS`` (default
50) sets the length; about 1800 is the long run.
"""

from __future__ import annotations

import functools
import gc
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websocket
from flask import Flask

from flask_verdant.presence import PresenceRegistry
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient, of_type

from .realtime_helpers import Closed, Socket, serving, sync_server, wait_for

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("VERDANT_SOAK_SECONDS", "50"))
REALTIME_CLIENTS = 4
PULL_CLIENTS = 3
# Growth allowed between the end of the warm-up and the end of the run.
MAX_HEAP_GROWTH_BYTES = 2 * 1024 * 1024
MAX_RESIDENT_GROWTH_BYTES = 128 * 1024 * 1024


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Run:
    def __init__(self, app: Flask, address: str, deadline: float) -> None:
        self.app = app
        self.address = address
        self.deadline = deadline
        self.lock = threading.Lock()
        # Per client, one bit per operation number: acknowledged or not (a set of names would
        # grow the heap this test measures).
        self.acked: dict[str, bytearray] = {}
        self.errors: list[str] = []
        self.evictions = 0
        self.reconnects = 0

    def running(self) -> bool:
        return time.monotonic() < self.deadline and not self.errors

    def record(self, name: str, number: int) -> None:
        with self.lock:
            bits = self.acked.setdefault(name, bytearray(1 << 16))
            bits[number >> 3] |= 1 << (number & 7)

    def acknowledged(self) -> set[str]:
        return {
            f"items/{name}-{number}"
            for name, bits in self.acked.items()
            for number in range(len(bits) * 8)
            if bits[number >> 3] & (1 << (number & 7))
        }

    def guard(self, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except Exception as error:  # noqa: BLE001  (reported by the test)
                with self.lock:
                    self.errors.append(f"{type(error).__name__}: {error}")

        return run


def realtime_client(run: Run, name: str) -> None:
    replica = VerdantTestClient(run.app, library_id="soak", user_id=name)
    rng = random.Random(name)
    count = 0
    while run.running():
        socket = Socket(run.address, replica.token)
        try:
            socket.send(replica.presence_message({"cursor": count}))
            socket.send(replica.sync_message(since=None if count == 0 else "x"))
            socket.receive_until("sync-resp", timeout=20)
            for _ in range(rng.randint(1, 6)):
                count += 1
                oid = f"items/{name}-{count}"
                op = replica.op_message(
                    replica.operation(oid, {"op": "initialize", "value": {"n": count}})
                )
                socket.send(op)
                answer = receive_either(socket, ("server-ack", "need-since"))
                if answer["type"] == "need-since":
                    break  # evicted since its sync: a real client resyncs on reconnect
                assert answer["timestamp"] == op["timestamp"]
                run.record(name, count)
            socket.send({"type": "heartbeat", "replicaId": replica.replica_id})
            socket.receive_until("heartbeat-response", timeout=20)
        except (Closed, websocket.WebSocketConnectionClosedException):
            pass  # the server closed it (an eviction): a real client reconnects and resyncs
        finally:
            socket.close()  # offline for a moment
        with run.lock:
            run.reconnects += 1
        time.sleep(rng.uniform(0, 0.3))


def receive_either(socket: Socket, kinds: tuple[str, ...]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        message = socket.receive(max(0.01, deadline - time.monotonic()))
        if message["type"] in kinds:
            return message


def pull_client(run: Run, name: str) -> None:
    replica = VerdantTestClient(run.app, library_id="soak", user_id=name)
    rng = random.Random(name)
    count = 0
    while run.running():
        operations = []
        for _ in range(rng.randint(0, 3)):
            count += 1
            oid = f"items/{name}-{count}"
            operations.append(replica.operation(oid, {"op": "initialize", "value": {"n": count}}))
        answer = replica.send(
            replica.presence_message({"n": count}),
            replica.sync_message(operations=operations, since="x", resync_all=False),
        )
        responses = of_type(answer, "sync-resp")
        # Stored, unless the server asked for the whole history first (need-since: a new
        # replica, say after an eviction) or told the replica to reset.
        if responses and not responses[0]["overwriteLocalData"]:
            for operation in operations:
                run.record(name, int(operation["oid"].rpartition("-")[2]))
        time.sleep(rng.uniform(0.05, 0.3))


def evictor(run: Run) -> None:
    rng = random.Random(0)
    users = [f"rt{n}" for n in range(REALTIME_CLIENTS)] + [f"pull{n}" for n in range(PULL_CLIENTS)]
    while run.running():
        time.sleep(rng.uniform(1.0, 3.0))
        with run.app.app_context():
            sync_server(run.app).evict_user("soak", rng.choice(users))
        with run.lock:
            run.evictions += 1


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_clients_join_write_leave_and_get_evicted_without_loss_or_growth(
    make_app: Callable[..., Flask], traced: None
) -> None:
    app = make_app(
        {"VERDANT_PRESENCE_KEEPALIVE_SECONDS": 2, "VERDANT_COMPACTION_DELAY_SECONDS": 0.05}
    )
    with serving(app) as address:
        run = Run(app, address, time.monotonic() + SECONDS)
        workers = [
            threading.Thread(target=run.guard(functools.partial(realtime_client, run, f"rt{n}")))
            for n in range(REALTIME_CLIENTS)
        ]
        workers += [
            threading.Thread(target=run.guard(functools.partial(pull_client, run, f"pull{n}")))
            for n in range(PULL_CLIENTS)
        ]
        workers.append(threading.Thread(target=run.guard(functools.partial(evictor, run))))
        for worker in workers:
            worker.start()
        time.sleep(SECONDS * 0.25)
        gc.collect()
        heap, resident = tracemalloc.get_traced_memory()[0], resident_bytes()
        for worker in workers:
            worker.join(SECONDS + 60)
        gc.collect()
        heap_growth = tracemalloc.get_traced_memory()[0] - heap
        resident_growth = resident_bytes() - resident
        assert not run.errors, run.errors[:5]
        assert run.evictions >= 2 and run.reconnects >= 10

        server = sync_server(app)
        wait_for(lambda: not server.hub.members("soak"), timeout=10)
        wait_for(lambda: present(server) == 0, timeout=10)
        newcomer = VerdantTestClient(app, library_id="soak", user_id="newcomer")
        response = of_type(newcomer.sync(), "sync-resp")[0]
        received = {o["oid"] for o in response["operations"]} | {
            b["oid"] for b in response["baselines"]
        }
        acknowledged = run.acknowledged()
        missing = acknowledged - received
        assert not missing, sorted(missing)[:10]
        print(
            f"soak: {SECONDS:.0f}s, {len(acknowledged)} acknowledged operations, "
            f"{run.reconnects} reconnects, {run.evictions} evictions; after the warm-up the "
            f"heap grew {heap_growth / 2**20:.2f} MiB, resident memory "
            f"{resident_growth / 2**20:.1f} MiB"
        )
        assert heap_growth < MAX_HEAP_GROWTH_BYTES
        assert resident_growth < MAX_RESIDENT_GROWTH_BYTES


def present(server: SyncServer) -> int:
    """How many replicas the (in-memory, one worker) presence registry holds."""
    registry = server.presence
    assert isinstance(registry, PresenceRegistry)
    return len(registry)
