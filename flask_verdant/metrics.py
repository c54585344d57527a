"""Prometheus metrics at ``<url_prefix>/metrics``, present whenever prometheus-client is installed.

``pip install 'flask-verdant[metrics]'`` adds it. Each app has its own registry (two apps in one
process never clash) fed by the server's signals (``flask_verdant.signals``) and, for each
message, by a plain callback (``ServerEvents.message_observers``); the database size is read
when scraped. With ``VERDANT_METRICS_TOKEN`` set, a scrape must send
``Authorization: Bearer <token>``. Under several worker processes each worker reports its own
numbers (scrape each, or aggregate by instance).
"""

from __future__ import annotations

import contextlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, request

from . import json_codec, signals
from .server import SyncServer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Message handling is sub-millisecond to a few hundred milliseconds (a large first sync).
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)


def register_metrics(app: Flask, blueprint: Blueprint, server: SyncServer) -> bool:
    """Add the route and start counting, if prometheus-client is installed; say whether."""
    try:
        registry = _build_registry(app, server)
    except ImportError:
        return False
    app.extensions["verdant_metrics"] = registry
    blueprint.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    return True


def metrics_view() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    server: SyncServer = current_app.extensions["verdant"]
    expected = server.settings.metrics_token
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(given.strip(), expected):
            body = {"code": 4011, "message": "The metrics need their bearer token"}
            return Response(json_codec.dumps(body), status=401, mimetype="application/json")
    registry: CollectorRegistry = current_app.extensions["verdant_metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _build_registry(app: Flask, server: SyncServer) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    connections = Gauge(
        "verdant_open_connections",
        "Lasting connections open now (websockets, held long-polls)",
        ["transport"],
        registry=registry,
    )
    for transport in ("websocket", "long-poll"):
        connections.labels(transport).set(0)
    messages = Counter(
        "verdant_messages",
        "Client messages handled, by type and transport",
        ["type", "transport"],
        registry=registry,
    )
    refusals = Counter(
        "verdant_refusals",
        "Refused requests, upgrades and frames, by error code or websocket close code",
        ["code", "transport"],
        registry=registry,
    )
    transaction = Histogram(
        "verdant_transaction_seconds",
        "Time a message spends in its database transaction",
        ["type"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    fanout = Histogram(
        "verdant_fanout_seconds",
        "Time to hand a message's replies and broadcasts to every connection of its library",
        ["type"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    stored = Counter(
        "verdant_operations_stored", "Operations stored (new ones only)", registry=registry
    )
    passes = Counter("verdant_compaction_passes", "Compaction passes committed", registry=registry)
    folded = Counter(
        "verdant_compacted_operations",
        "Operations folded into baselines by compaction",
        registry=registry,
    )
    evictions = Counter("verdant_evictions", "Libraries evicted", registry=registry)
    restores = Counter(
        "verdant_restorations", "Evicted libraries restored by a replica", registry=registry
    )
    database_bytes = Gauge(
        "verdant_database_bytes",
        "Size of the sqlite database with its write-ahead log",
        registry=registry,
    )
    database_bytes.set_function(lambda: _database_size(server.database.path))

    def on_connected(_: Any, *, transport: str, **__: Any) -> None:
        connections.labels(transport).inc()

    def on_disconnected(_: Any, *, transport: str, **__: Any) -> None:
        connections.labels(transport).dec()

    # Children looked up once per (type, transport): this runs for every message.
    children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def on_handled(
        message_type: str,
        transport: str,
        transaction_seconds: float,
        fanout_seconds: float,
        operations: int,
    ) -> None:
        key = (message_type, transport)
        found = children.get(key)
        if found is None:
            found = children[key] = (
                messages.labels(message_type, transport),
                transaction.labels(message_type),
                fanout.labels(message_type),
            )
        counted, transacted, fanned = found
        counted.inc()
        transacted.observe(transaction_seconds)
        fanned.observe(fanout_seconds)
        if operations:
            stored.inc(operations)

    def on_refused(_: Any, *, code: int, transport: str, **__: Any) -> None:
        refusals.labels(str(code), transport).inc()

    def on_compacted(_: Any, *, result: Any, **__: Any) -> None:
        passes.inc()
        folded.inc(result.folded_operations)

    for signal, receiver in (
        (signals.replica_connected, on_connected),
        (signals.replica_disconnected, on_disconnected),
        (signals.request_refused, on_refused),
        (signals.compaction_done, on_compacted),
        (signals.library_evicted, lambda _, **__: evictions.inc()),
        (signals.library_restored, lambda _, **__: restores.inc()),
    ):
        signal.connect(receiver, sender=app, weak=False)
    server.events.message_observers.append(on_handled)
    return registry


def _database_size(path: str) -> float:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(path + suffix)
    return float(total)
