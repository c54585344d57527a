"""What the runner measures: each step is one load generator workload with its options (or
``newcomer``: real ``@verdant-web/store`` clients, ``benchmarks/newcomer.py``).

A step runs on every storage it names: ``disk`` puts the databases in a temporary directory on the
machine's disk, where both servers make every acknowledged operation durable first (the official
server with ``synchronous=FULL`` in every commit, flask-verdant with its group commit's fsync of
the WAL, ``VERDANT_DURABILITY=fsync``), ``tmpfs`` in ``/dev/shm``, where a commit costs no disk
flush and the servers' CPU costs stand alone.

A step runs against the servers its ``kinds`` name: the official Node server and one flask-verdant
worker always, and the fan-out steps also against flask-verdant with a Redis message queue, one
worker and two (``benchmarks/servers.py`` says how each is pinned).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STORAGES = {"disk": None, "tmpfs": "/dev/shm"}
NAMES = {
    "official": "official 2.1.2",
    "flask": "flask-verdant",
    "flask-redis": "flask-verdant w1+Redis",
    "flask-w2-redis": "flask-verdant w2+Redis",
}
PAIR = ("official", "flask")
ALL_KINDS = tuple(NAMES)


@dataclass(frozen=True)
class Step:
    key: str
    workload: str
    options: dict[str, int] = field(default_factory=dict)
    storages: tuple[str, ...] = ("disk", "tmpfs")
    kinds: tuple[str, ...] = PAIR


FULL = (
    Step(
        "fanout",
        "fanout",
        {"libraries": 8, "replicas": 4, "duration": 15, "warmup": 3},
        kinds=ALL_KINDS,
    ),
    Step(
        "fanout-paced",
        "fanout",
        {"libraries": 8, "replicas": 4, "think-ms": 1000, "duration": 10, "warmup": 2},
        kinds=ALL_KINDS,
    ),
    Step("http", "http", {"libraries": 4, "replicas": 4, "duration": 10, "warmup": 2}),
    Step("initial", "initial", {"operations": 20_000, "batch": 100, "joins": 3}),
    Step("idle", "idle", {"sockets": 1000, "group-size": 10, "heartbeat-ms": 15_000}, ("disk",)),
    # what one gevent worker holds at --worker-connections 10000 (README: Deployment)
    Step(
        "idle-10k", "idle", {"sockets": 10_000, "group-size": 10, "heartbeat-ms": 15_000}, ("disk",)
    ),
    # real @verdant-web/store clients instead of the load generator (benchmarks/newcomer.py)
    Step("newcomer", "newcomer", {"documents": 2000, "batch": 50}),
)

# The most websockets a step holds open to one server at once.
MOST_SOCKETS = max(int(step.options.get("sockets", 0)) for step in FULL)

QUICK = (
    Step(
        "fanout",
        "fanout",
        {"libraries": 4, "replicas": 3, "duration": 4, "warmup": 1},
        ("disk",),
        ALL_KINDS,
    ),
    Step(
        "fanout-paced",
        "fanout",
        {"libraries": 4, "replicas": 3, "think-ms": 1000, "duration": 5, "warmup": 1},
        ("disk",),
        ALL_KINDS,
    ),
    Step("http", "http", {"libraries": 2, "replicas": 3, "duration": 4, "warmup": 1}, ("disk",)),
    Step("initial", "initial", {"operations": 5_000, "batch": 100, "joins": 2}, ("disk",)),
    Step("idle", "idle", {"sockets": 200, "group-size": 10, "heartbeat-ms": 3_000}, ("disk",)),
)

# A few seconds in all: what the pytest smoke test runs against flask-verdant alone.
SMOKE = (
    Step(
        "fanout", "fanout", {"libraries": 2, "replicas": 3, "duration": 2, "warmup": 0}, ("disk",)
    ),
    Step("http", "http", {"libraries": 2, "replicas": 2, "duration": 2, "warmup": 0}, ("disk",)),
    Step("initial", "initial", {"operations": 1_000, "batch": 100, "joins": 1}, ("disk",)),
    Step("idle", "idle", {"sockets": 40, "group-size": 10, "heartbeat-ms": 500}, ("disk",)),
)
