"""Turning the runs' JSON results into the markdown tables of BENCHMARKS.md.

Every number is the median over rounds; a ratio is flask-verdant / official, so below 1 is
better for latencies, times and memory, and above 1 for throughputs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .plan import ALL_KINDS, NAMES, PAIR

KINDS = PAIR
NEWCOMER = "2,000-document offline replica + newcomer, real store client"
START = "<!-- results:start (written by python -m benchmarks.run) -->"
END = "<!-- results:end -->"


@dataclass(frozen=True)
class Record:
    round: int
    kind: str
    step: str
    storage: str
    result: dict[str, Any]


@dataclass(frozen=True)
class Metric:
    step: str
    label: str
    path: tuple[str, ...]
    higher_is_better: bool = False
    target: float | None = None  # the target for the ratio, if it sets one
    storage: str | None = None  # shown for this storage only (None: every storage)


METRICS = (
    Metric("fanout", "acked ops/s", ("ackedOpsPerSecond",), True, 1.0, "tmpfs"),
    # On disk both servers fsync before every acknowledgement (flask-verdant's group commit):
    # the closed loop measures how well acknowledgements share those fsyncs.
    Metric(
        "fanout",
        "closed-loop acked ops/s, both fsyncing every acknowledgement",
        ("ackedOpsPerSecond",),
        True,
        5.0,
        "disk",
    ),
    Metric("fanout", "server-ack p50 ms", ("serverAckMs", "p50")),
    Metric("fanout", "server-ack p99 ms", ("serverAckMs", "p99")),
    Metric("fanout", "op to every peer p50 ms", ("everyPeerMs", "p50"), target=1.0),
    Metric("fanout", "op to every peer p95 ms", ("everyPeerMs", "p95")),
    Metric("fanout", "op to every peer p99 ms", ("everyPeerMs", "p99"), target=1.0),
    Metric("fanout-paced", "acked ops/s", ("ackedOpsPerSecond",), True),
    Metric("fanout-paced", "server-ack p50 ms", ("serverAckMs", "p50")),
    Metric("fanout-paced", "op to every peer p50 ms", ("everyPeerMs", "p50"), target=1.0),
    Metric("fanout-paced", "op to every peer p99 ms", ("everyPeerMs", "p99"), target=1.0),
    Metric("http", "requests/s", ("requestsPerSecond",), True),
    Metric("http", "push p50 ms", ("pushMs", "p50")),
    Metric("http", "push p99 ms", ("pushMs", "p99")),
    Metric("http", "poll cycle p50 ms", ("pollMs", "p50")),
    Metric("http", "poll cycle p99 ms", ("pollMs", "p99")),
    Metric("http", "time to convergence ms", ("convergenceMs",)),
    Metric("initial", "join time p50 ms", ("joinMs", "p50"), target=1.0),
    Metric("initial", "sync-resp bytes", ("syncBytes",)),
    Metric("initial", "seeding ops/s (batches of 100)", ("seedOpsPerSecond",), True),
    Metric("idle", "KiB per idle websocket", ("kibPerConnection",)),
    Metric("idle", "heartbeat p50 ms", ("heartbeatMs", "p50")),
    Metric("idle", "heartbeat p99 ms", ("heartbeatMs", "p99")),
    Metric("idle", "seconds to connect and sync all", ("connectSeconds",)),
    Metric("idle-10k", "KiB per idle websocket", ("kibPerConnection",)),
    Metric("idle-10k", "heartbeat p50 ms", ("heartbeatMs", "p50")),
    Metric("idle-10k", "heartbeat p99 ms", ("heartbeatMs", "p99")),
    Metric("idle-10k", "seconds to connect and sync all", ("connectSeconds",)),
    Metric(
        "newcomer",
        f"{NEWCOMER}: s from online until the server holds all",
        ("uploadSeconds",),
        target=1.0,
    ),
    Metric(
        "newcomer", f"{NEWCOMER}: s until the newcomer holds all", ("newcomerSeconds",), target=1.0
    ),
    Metric("newcomer", "newcomer's first sync-resp s", ("newcomerSyncSeconds",)),
)


def _value(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def _median(records: Iterable[Record], kind: str, metric: Metric, storage: str) -> float | None:
    chosen = (r for r in records if (r.kind, r.step, r.storage) == (kind, metric.step, storage))
    values = [v for r in chosen if (v := _value(r.result, metric.path)) is not None]
    return statistics.median(values) if values else None


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _verdict(metric: Metric, ratio: float | None) -> str:
    if metric.target is None or ratio is None:
        return ""
    met = ratio >= metric.target if metric.higher_is_better else ratio <= metric.target
    sign = ">=" if metric.higher_is_better else "<="
    return f"{sign} {metric.target:g} {'met' if met else 'NOT met'}"


def metrics_table(records: list[Record], storage: str) -> str:
    lines = [
        "| workload | metric | official 2.1.2 | flask-verdant | ratio fv/official | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for metric in METRICS:
        if metric.storage not in (None, storage):
            continue
        official, flask = (_median(records, kind, metric, storage) for kind in KINDS)
        if official is None and flask is None:
            continue
        ratio = flask / official if official and flask is not None else None
        ratio_text = "–" if ratio is None else f"{ratio:.2f}"
        lines.append(
            f"| {metric.step} | {metric.label} | {_number(official)} | {_number(flask)} "
            f"| {ratio_text} | {_verdict(metric, ratio)} |"
        )
    return "\n".join(lines)


def delivery_table(records: list[Record]) -> str:
    """Exactly-once check, summed over every run: anything but 0 lost/duplicated is a failure.
    The newcomer step counts documents, not deliveries (it fails if one is missing): not here."""
    lines = [
        "| workload | storage | server | operations | deliveries expected | lost | duplicated "
        "| unknown | other problems |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in (r for r in records if "delivery" in r.result):
        groups.setdefault((record.step, record.storage, record.kind), []).append(record.result)
    for (step, storage, kind), results in groups.items():
        totals = {
            key: sum(r["delivery"][key] for r in results)
            for key in ("operations", "expected", "lost", "duplicated", "unknown")
        }
        lines.append(
            f"| {step} | {storage} | {_name(kind)} | {totals['operations']:,} "
            f"| {totals['expected']:,} | {totals['lost']} | {totals['duplicated']} "
            f"| {totals['unknown']} | {_problems(results)} |"
        )
    return "\n".join(lines)


def _problems(results: list[dict[str, Any]]) -> str:
    counters = {
        "disconnected": "sockets dropped",
        "heartbeatsLost": "heartbeats unanswered",
        "failedRequests": "failed requests",
    }
    found = [
        f"{total} {label}"
        for key, label in counters.items()
        if (total := sum(r.get(key) or 0 for r in results))
    ]
    if any(r.get("drained") is False for r in results):
        found.append("not drained")
    if any(r.get("workload") == "http" and r.get("convergenceMs") is None for r in results):
        found.append("did not converge")
    if any(r.get("baselinesReceived") for r in results):
        found.append("history was compacted")
    return ", ".join(found) or "none"


def _name(kind: str) -> str:
    return NAMES[kind]


def _cpu_per_op_us(result: dict[str, Any], redis: bool) -> float | None:
    """CPU microseconds per acknowledged operation over the measured seconds: of the server's own
    processes (the Node process, or the gunicorn workers), or of Redis."""
    cpu = result.get("serverCpuSeconds")
    acked = result.get("acked")
    if not cpu or not acked:
        return None
    chosen = [seconds for role, seconds in cpu.items() if (role == "redis") == redis]
    return sum(chosen) / acked * 1e6 if chosen else None


def _cores_busy(result: dict[str, Any]) -> float | None:
    cpu = result.get("serverCpuSeconds")
    if not cpu or not result.get("seconds"):
        return None
    busy: float = sum(s for role, s in cpu.items() if role != "redis")
    return busy / float(result["seconds"])


@dataclass(frozen=True)
class Row:
    step: str
    label: str
    value: Callable[[dict[str, Any]], float | None]


def _at(*path: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda result: _value(result, path)


WORKER_ROWS = (
    Row("fanout", "acked ops/s (closed loop)", _at("ackedOpsPerSecond")),
    Row("fanout", "server-ack p50 ms", _at("serverAckMs", "p50")),
    Row("fanout", "op to every peer p50 ms", _at("everyPeerMs", "p50")),
    Row("fanout", "op to every peer p99 ms", _at("everyPeerMs", "p99")),
    Row(
        "fanout", "server CPU us per acked op (Node / workers)", lambda r: _cpu_per_op_us(r, False)
    ),
    Row("fanout", "Redis CPU us per acked op", lambda r: _cpu_per_op_us(r, True)),
    Row("fanout", "server cores busy (Node / workers)", _cores_busy),
    Row("fanout-paced", "acked ops/s", _at("ackedOpsPerSecond")),
    Row("fanout-paced", "server-ack p50 ms", _at("serverAckMs", "p50")),
    Row("fanout-paced", "op to every peer p50 ms", _at("everyPeerMs", "p50")),
    Row("fanout-paced", "op to every peer p99 ms", _at("everyPeerMs", "p99")),
)


def _row_median(records: Iterable[Record], kind: str, row: Row, storage: str) -> float | None:
    chosen = (r for r in records if (r.kind, r.step, r.storage) == (kind, row.step, storage))
    values = [v for r in chosen if (v := row.value(r.result)) is not None]
    return statistics.median(values) if values else None


def workers_table(records: list[Record], storage: str) -> str | None:
    """The fan-out steps against every server, Redis message queue included, then the Redis
    hop's added latency: paced p50 of one worker with Redis minus one worker without."""
    kinds = [k for k in ALL_KINDS if any(r.kind == k for r in records)]
    if not any(k.endswith("-redis") for k in kinds):
        return None
    lines = [
        f"| workload | metric | {' | '.join(_name(k) for k in kinds)} |",
        f"| --- | --- |{' ---: |' * len(kinds)}",
    ]
    for row in WORKER_ROWS:
        values = [_row_median(records, kind, row, storage) for kind in kinds]
        if all(v is None for v in values):
            continue
        cells = " | ".join(_number(v) for v in values)
        lines.append(f"| {row.step} | {row.label} | {cells} |")
    lines += ["", *_redis_hop(records, storage)]
    return "\n".join(lines)


def _redis_hop(records: list[Record], storage: str) -> list[str]:
    found = []
    hop_rows = [
        ("fanout-paced", "op to every peer p50 ms"),
        ("fanout-paced", "server-ack p50 ms"),
        ("fanout", "op to every peer p50 ms"),
    ]
    for row in (r for key in hop_rows for r in WORKER_ROWS if (r.step, r.label) == key):
        without, with_redis = (
            _row_median(records, kind, row, storage) for kind in ("flask", "flask-redis")
        )
        if without is None or with_redis is None or not without:
            continue
        found.append(
            f"- Redis hop, {row.step} {row.label.replace(' ms', '')}: "
            f"{with_redis - without:+.3g} ms (w1+Redis {_number(with_redis)} / w1 "
            f"{_number(without)} ms = {with_redis / without:.2f})"
        )
    return found


def render(records: list[Record], machine: dict[str, str], command: str, seconds: float) -> str:
    storages = [s for s in ("disk", "tmpfs") if any(r.storage == s for r in records)]
    rounds = max(r.round for r in records) + 1
    parts = [
        f"Command: `{command}`; {rounds} round(s) per server, alternating; "
        f"{seconds / 60:.1f} min in all.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in machine.items()),
    ]
    for storage in storages:
        place = "temporary directory on disk" if storage == "disk" else "/dev/shm (tmpfs)"
        parts += ["", f"### Databases in a {place}", "", metrics_table(records, storage)]
    for storage in storages:
        workers = workers_table(records, storage)
        if workers is not None:
            parts += ["", f"### Several workers with Redis, fan-out ({storage})", "", workers]
    if any("delivery" in r.result for r in records):
        parts += ["", "### Every operation delivered exactly once?", "", delivery_table(records)]
    return "\n".join(parts)


def write_section(path: str, section: str) -> None:
    """Replace what lies between the markers of BENCHMARKS.md, keeping the prose around it."""
    try:
        with open(path, encoding="utf-8") as existing:
            text = existing.read()
    except FileNotFoundError:
        text = f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    with open(path, "w", encoding="utf-8") as output:
        output.write(f"{head}{START}\n{section}\n{END}{tail}")
