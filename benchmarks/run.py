"""Measure flask-verdant and the official server side by side and write BENCHMARKS.md.

    python -m benchmarks.run            # full comparison, about 15 minutes; writes BENCHMARKS.md
    python -m benchmarks.run --quick    # about 2 minutes; prints the table only

Each measurement gets a fresh database and a freshly started server pinned to CPU 0, with the
load generator (Node, ``benchmarks/loadgen``) pinned to CPU 1; the servers take turns on every
step of every round (A B A B), so drift in the machine's load falls on all alike. The fan-out
steps also run flask-verdant with a Redis message queue (one and two workers; Redis, and the
second worker, share CPU 1 with the generator).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import machine, report, servers
from .plan import ALL_KINDS, FULL, QUICK, STORAGES, Step

LOADGEN = servers.ROOT / "benchmarks" / "loadgen" / "main.mjs"


def run_workload(
    server: servers.RunningServer, step: Step, cpu: int | None, timeout: float | None = None
) -> dict[str, Any]:
    """Run one workload against a running server; its JSON result. The load generator runs
    them all but ``newcomer``, which drives real store clients (``benchmarks/newcomer.py``)."""
    if timeout is None:  # 5 minutes, and more for many sockets (a token and an upgrade each)
        timeout = 300.0 + 0.2 * int(step.options.get("sockets", 0))
    if step.workload == "newcomer":  # real store clients, driven from Python
        argv = [*servers.pinned(cpu), sys.executable, "-m", "benchmarks.newcomer"]
        argv += ["--base", server.base, "--timeout", str(timeout)]
        timeout *= 4  # its own timeout bounds each of its three waits; and the offline writes
    else:
        argv = [*servers.pinned(cpu), "node", str(LOADGEN), step.workload, "--base", server.base]
    for name, value in step.options.items():
        argv += [f"--{name}", str(value)]
    if step.workload == "idle":
        argv += ["--server-pid", str(server.pid)]
    roles = list(server.cpu_pids)
    if step.workload == "fanout" and roles:
        argv += ["--cpu-pids", ",".join(str(server.cpu_pids[role]) for role in roles)]
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=servers.ROOT
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{step.key} against {server.name} failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    ticks = result.pop("serverCpuTicks", None)
    if ticks:  # CPU seconds of each server process during the measured seconds, by role
        tick = os.sysconf("SC_CLK_TCK")
        result["serverCpuSeconds"] = {role: n / tick for role, n in zip(roles, ticks, strict=True)}
    return result


def measure(
    kinds: list[str], steps: tuple[Step, ...], rounds: int, logs: Path
) -> list[report.Record]:
    server_cpu, generator_cpu = (0, 1) if len(os.sched_getaffinity(0)) >= 2 else (None, None)
    records = []
    for round_number in range(rounds):
        for step in steps:
            for storage in step.storages:
                for kind in (k for k in step.kinds if k in kinds):
                    label = f"round {round_number + 1} {step.key} ({storage}) {kind}"
                    print(f"{label} ...", file=sys.stderr, flush=True)
                    directory = Path(
                        tempfile.mkdtemp(prefix="verdant-bench-", dir=STORAGES[storage])
                    )
                    log = logs / f"{kind}-{step.key}-{storage}-{round_number + 1}.log"
                    server = servers.start(
                        kind, directory / "db.sqlite3", server_cpu, log, spare_cpu=generator_cpu
                    )
                    try:
                        result = run_workload(server, step, generator_cpu)
                    finally:
                        server.stop()
                        shutil.rmtree(directory, ignore_errors=True)
                    records.append(report.Record(round_number, kind, step.key, storage, result))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short workloads, one round")
    parser.add_argument("--rounds", type=int, help="rounds per server (default 2, quick 1)")
    parser.add_argument(
        "--only", action="append", choices=ALL_KINDS, metavar="KIND",
        help=f"measure only this server (repeatable): {', '.join(ALL_KINDS)}",
    )  # fmt: skip
    parser.add_argument(
        "--step", action="append", metavar="KEY",
        help="run only this step of the plan (repeatable), e.g. --step idle-10k",
    )  # fmt: skip
    parser.add_argument("--output", default=str(servers.ROOT / "BENCHMARKS.md"))
    parser.add_argument(
        "--write", action=argparse.BooleanOptionalAction, default=None,
        help="write BENCHMARKS.md and benchmarks/results.json (default: yes unless --quick)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    steps: tuple[Step, ...] = QUICK if args.quick else FULL
    if args.step:
        unknown = set(args.step) - {step.key for step in steps}
        if unknown:
            parser.error(f"no step {', '.join(sorted(unknown))} in this plan")
        steps = tuple(step for step in steps if step.key in args.step)
    rounds = args.rounds or (1 if args.quick else 2)
    kinds = args.only or list(ALL_KINDS)
    write = (not args.quick) if args.write is None else args.write

    servers.ensure_installed()
    servers.raise_open_files()
    load_before = machine.load()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="verdant-bench-logs-") as logs:
        records = measure(kinds, steps, rounds, Path(logs))
    seconds = time.monotonic() - started
    details = machine.describe()
    details["load average"] = f"{load_before} before, {details['load average']} after"
    command = shlex.join(["python", "-m", "benchmarks.run", *(argv or sys.argv[1:])])
    section = report.render(records, details, command, seconds)
    print(section)
    if write:
        report.write_section(args.output, section)
        results = servers.ROOT / "benchmarks" / "results.json"
        results.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
