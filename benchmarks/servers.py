"""Starting and stopping the two servers under test, each pinned to one CPU.

Both serve the same routes (``/sync``, ``/auth/<library>?user=``, ``/health``), so the load
generator cannot tell them apart. ``pid`` is the process that serves connections (gunicorn's
worker, not its master), whose resident memory the idle workload measures.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .plan import MOST_SOCKETS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "benchmarks" / "reference_server"
SECRET = "benchmark-secret-of-at-least-32-bytes"
NAMES = {"official": "official 2.1.2", "flask": "flask-verdant"}
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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


def pinned(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def start(kind: str, database_file: Path, cpu: int | None, log: Path) -> RunningServer:
    port = _free_port()
    env = dict(os.environ, VERDANT_DATABASE_FILE=str(database_file), VERDANT_TOKEN_SECRET=SECRET)
    # Equal promises: like the official server's, an acknowledged operation is on disk.
    env["VERDANT_DURABILITY"] = "fsync"
    if kind == "official":
        argv = [*pinned(cpu), "node", "host.mjs"]
        env.update(PORT=str(port), HOST="127.0.0.1")
        cwd = REFERENCE_DIR
    else:
        argv = [
            *pinned(cpu),
            str(Path(sys.executable).with_name("gunicorn")),
            "-k", "gevent", "-w", "1",
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
        _wait_healthy(base, process)
        pid = process.pid if kind == "official" else _only_child(process.pid)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return RunningServer(NAMES[kind], base, process, pid, log)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {base} not ready within {timeout} s")


def _only_child(pid: int, timeout: float = 10.0) -> int:
    """gunicorn's single worker: the master's child process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == 1:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn master {pid} has no single worker")
