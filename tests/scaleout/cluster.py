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
import sqlite3
import subprocess
import sys
import time
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
        worker_connections: int = 1000,
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
            gunicorn_args=("--keep-alive", "0", "--worker-connections", str(worker_connections)),
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
            # A worker stopped while it holds sqlite's write lock would keep it from the chosen
            # one: stop them at a moment the lock is free (stopped, they cannot take it).
            deadline = time.monotonic() + 30
            while True:
                for other in others:
                    os.kill(other, signal.SIGSTOP)
                    stopped.append(other)
                if self._write_lock_free():
                    break
                self._continue(stopped)
                if time.monotonic() > deadline:
                    raise RuntimeError("the database's write lock was never free")
                time.sleep(0.02)
            yield
        finally:
            self._continue(stopped)

    @staticmethod
    def _continue(stopped: list[int]) -> None:
        while stopped:
            with suppress(ProcessLookupError):
                os.kill(stopped.pop(), signal.SIGCONT)

    def _write_lock_free(self) -> bool:
        """Whether a write transaction on the database could start now (no file yet: yes)."""
        if not self.database_file.exists():
            return True
        try:
            connection = sqlite3.connect(f"file:{self.database_file}?mode=rw", uri=True, timeout=0)
        except sqlite3.OperationalError:
            return True  # removed meanwhile
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()

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
