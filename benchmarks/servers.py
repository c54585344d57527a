"""Starting and stopping the servers under test, each pinned to its CPUs.

All serve the same routes (``/sync``, ``/auth/<library>?user=``, ``/health``), so the load
generator cannot tell them apart. ``pid`` is the process that serves connections (gunicorn's
worker, not its master), whose resident memory the idle workload measures.

Kinds: ``official`` (the Node server) and ``flask`` (one gunicorn gevent worker, the in-process
broker) run on the server CPU alone. ``flask-redis`` is the same worker with
``VERDANT_MESSAGE_QUEUE`` pointing at a ``redis-server`` the runner starts on a free port, pinned
to the spare CPU (the generator's: it uses about 0.2 of it), so the worker's CPU stays its own and
the difference to ``flask`` is the Redis hop. ``flask-w2-redis`` runs two workers on both CPUs,
which they share with the generator and Redis: on a 2-core machine it shows that the broker
works across processes and what it costs, not how two dedicated cores scale.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .plan import MOST_SOCKETS, NAMES

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "benchmarks" / "reference_server"
SECRET = "benchmark-secret-of-at-least-32-bytes"
WORKERS = {"flask": 1, "flask-redis": 1, "flask-w2-redis": 2}
# gunicorn's gevent worker serves at most this many connections at once: the most sockets a step
# holds, and room for the token requests and health checks around them.
WORKER_CONNECTIONS = MOST_SOCKETS + 1024


@dataclass
class RunningServer:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    pid: int
    log: Path
    # The processes whose CPU time is the server's, by role ("node", "worker 1", "redis", ...).
    cpu_pids: dict[str, int] = field(default_factory=dict)
    broker: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        _terminate(self.process)
        if self.broker is not None:
            _terminate(self.broker)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ensure_installed() -> None:
    """``npm ci`` where the official server or the generator's ``ws`` is missing."""
    if not (REFERENCE_DIR / "node_modules" / "@verdant-web" / "server").is_dir():
        _npm_ci(REFERENCE_DIR)
    if not (ROOT / "node_modules" / "ws").is_dir():
        _npm_ci(ROOT)


def _npm_ci(directory: Path) -> None:
    print(f"npm ci in {directory}", file=sys.stderr)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, check=True
    )


def raise_open_files(needed: int = WORKER_CONNECTIONS + 1024) -> None:
    """Let this process and the servers and load generators it starts (they inherit the limit)
    open a file per socket: each of them holds one end of every socket of a step."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            print(
                f"open files are limited to {hard}: steps with more sockets will fail",
                file=sys.stderr,
            )
            needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def pinned(cpu: int | str | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def start(
    kind: str, database_file: Path, cpu: int | None, log: Path, spare_cpu: int | None = None
) -> RunningServer:
    """Start ``kind`` on ``cpu``; Redis, and a second worker, also get ``spare_cpu`` (see above)."""
    port = _free_port()
    env = dict(os.environ, VERDANT_DATABASE_FILE=str(database_file), VERDANT_TOKEN_SECRET=SECRET)
    # Equal promises: like the official server's, an acknowledged operation is on disk.
    env["VERDANT_DURABILITY"] = "fsync"
    # The http workload's pull replicas send a presence update with every poll and poll as fast
    # as the server answers, hundreds of times a second, far beyond the default rate limit (20
    # a second per user and library, answered with 429); the official server has no such limit.
    env["VERDANT_PRESENCE_UPDATES_PER_SECOND"] = "1000000"
    broker = None
    workers = WORKERS.get(kind, 0)
    if kind.endswith("-redis"):
        broker = _start_redis(database_file.parent, spare_cpu, log.with_suffix(".redis.log"))
        env["VERDANT_MESSAGE_QUEUE"] = f"redis://127.0.0.1:{broker.port}/0"
    if kind == "official":
        argv = [*pinned(cpu), "node", "host.mjs"]
        env.update(PORT=str(port), HOST="127.0.0.1")
        cwd = REFERENCE_DIR
    else:
        cpus: int | str | None = cpu
        if workers > 1 and cpu is not None and spare_cpu is not None:
            cpus = f"{cpu},{spare_cpu}"
        argv = [
            *pinned(cpus),
            str(Path(sys.executable).with_name("gunicorn")),
            "-k", "gevent", "-w", str(workers),
            "--worker-connections", str(WORKER_CONNECTIONS),
            "--no-control-socket",
            "--bind", f"127.0.0.1:{port}",
            "benchmarks.flask_app:create_app()",
        ]  # fmt: skip
        cwd = ROOT
    with log.open("wb") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        if kind == "official":
            _wait_healthy(base, process, set())
            cpu_pids = {"node": process.pid}
        else:
            children = _children(process, workers)
            _wait_healthy(base, process, set(children))
            cpu_pids = {f"worker {n}": pid for n, pid in enumerate(children, 1)}
    except BaseException:
        process.kill()
        process.wait()
        if broker is not None:
            _terminate(broker.process)
        raise
    if broker is not None:
        cpu_pids["redis"] = broker.process.pid
    pid = next(iter(cpu_pids.values()))
    return RunningServer(
        NAMES[kind], base, process, pid, log, cpu_pids, None if broker is None else broker.process
    )


@dataclass
class _Redis:
    process: subprocess.Popen[bytes]
    port: int


def _start_redis(directory: Path, cpu: int | None, log: Path, timeout: float = 10.0) -> _Redis:
    """A ``redis-server`` on a free port, keeping nothing on disk (as the README's setup)."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed (bash .ci/run installs it)")
    port = _free_port()
    argv = [
        *pinned(cpu), executable,
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--logfile", str(log), "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return _Redis(process, port)
        except OSError:
            time.sleep(0.05)
    _terminate(process)
    raise RuntimeError(f"redis-server on port {port} not ready within {timeout} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_healthy(
    base: str, process: subprocess.Popen[bytes], workers: set[int], timeout: float = 30.0
) -> None:
    """Until ``/health`` answers, and (with several workers) every worker has answered it, so
    that no worker is still loading the app when the workload's sockets connect."""
    unseen = set(workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                if response.status == 200:
                    unseen.discard(json.load(response).get("pid"))
                    if not unseen:
                        return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {base} not ready within {timeout} s")


def _children(master: subprocess.Popen[bytes], count: int, timeout: float = 10.0) -> list[int]:
    """gunicorn's workers: the master's ``count`` child processes."""
    pid = master.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {master.returncode} before it was ready")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == count:
            return sorted(int(child) for child in children)
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn master {pid} has not {count} worker(s)")
