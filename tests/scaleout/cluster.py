"""Real gunicorn with several gevent workers serving ``tests/interop/server_app.py``.

:class:`Cluster` is the interop suite's ``LiveServer`` with ``-w N`` and what a test of several
workers needs on top: the workers' pids (the master's children in ``/proc``), ``kill -9`` of one,
the connections each worker holds (its socket inodes matched against ``/proc/net/tcp``), and
:meth:`Cluster.only`, which steers new connections to one worker.

Steering: all workers accept from one listening socket, and the kernel hands a connection to
whichever worker asks first, so where a client lands is chance. While the other workers are
stopped (SIGSTOP) only the chosen one can accept; they continue (SIGCONT) right after, holding
every connection they had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.interop.conftest import SERVER_ROOT, LiveServer
from tests.interop.driver import wait_until

APP = "tests.interop.server_app:create_app()"


class Cluster(LiveServer):
    """``gunicorn -k gevent -w <workers>`` on one port, one sqlite file."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int,
        env: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        # No HTTP keep-alive: a client's idle connection to a stopped worker would hold its next
        # request (e.g. the token fetch) until that worker continues, defeating the steering.
        super().__init__(
            workdir,
            "flask",
            workers=workers,
            env=env,
            port=port,
            gunicorn_args=("--keep-alive", "0"),
        )

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        self.wait_workers(timeout=timeout)

    # ---- workers
    @property
    def master_pid(self) -> int:
        proc = self._proc
        if proc is None:
            raise RuntimeError("the cluster is not running")
        return proc.pid

    def worker_pids(self) -> list[int]:
        master = self.master_pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text()
        except FileNotFoundError:
            return []
        return sorted(int(pid) for pid in children.split())

    def wait_workers(self, *, without: int | None = None, timeout: float = 60.0) -> list[int]:
        """Wait until all workers are up and have loaded the app; ``without``: a killed one."""

        def booted() -> list[int] | None:
            pids = self.worker_pids()
            log = self.log()
            ready = [pid for pid in pids if f"Booting worker with pid: {pid}" in log]
            if len(ready) == self.workers and without not in ready:
                return ready
            return None

        pids: list[int] = wait_until(
            booted, timeout, message=lambda: f"workers did not boot\n{self.log_tail()}"
        )
        return pids

    def kill_worker(self, pid: int) -> None:
        """``kill -9`` one worker: no cleanup, its sockets reset; the master starts another."""
        if pid not in self.worker_pids():
            raise ValueError(f"{pid} is not a worker of this cluster")
        os.kill(pid, signal.SIGKILL)

    @contextmanager
    def only(self, pid: int) -> Iterator[None]:
        """New connections made inside the block are accepted by worker ``pid``."""
        others = [other for other in self.worker_pids() if other != pid]
        if len(others) == len(self.worker_pids()):
            raise ValueError(f"{pid} is not a worker of this cluster")
        stopped: list[int] = []
        try:
            for other in others:
                os.kill(other, signal.SIGSTOP)
                stopped.append(other)
            yield
        finally:
            for other in stopped:
                with suppress(ProcessLookupError):
                    os.kill(other, signal.SIGCONT)

    def connections(self) -> dict[int, int]:
        """Established connections on the server's port, per worker pid."""
        established: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except FileNotFoundError:
                continue
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and fields[3] == "01":  # 01: ESTABLISHED
                    established.add(int(fields[9]))
        counts: dict[int, int] = {}
        for pid in self.worker_pids():
            counts[pid] = sum(1 for inode in _socket_inodes(pid) if inode in established)
        return counts

    # ---- another process on the same app (the CLI)
    def flask(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``flask --app <the server's app> <args>`` with the server's configuration."""
        flask = Path(sys.executable).with_name("flask")
        return subprocess.run(
            [str(flask), "--app", APP, *args],
            cwd=SERVER_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except (FileNotFoundError, PermissionError):
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
