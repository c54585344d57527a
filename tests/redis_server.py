"""A real ``redis-server`` process on a free port, for the several-workers tests.

The server runs in a temporary directory with no persistence (no RDB snapshots, no append-only
file) unless asked, so a restart starts empty, as a cache-only Redis does. Tests can stop it and
start it again on the same port mid-test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.realtime_helpers import free_port


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; :attr:`url` is what ``VERDANT_MESSAGE_QUEUE`` takes."""

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (bash .ci/run installs it)")
        self.executable = executable
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persist = persist
        self.port = free_port()
        self.log_file = workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_file),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop it as an outage would (SIGKILL: no goodbye to its clients, nothing saved)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ping(self) -> bool:
        """Whether the server answers ``PING`` (raw RESP, so this needs no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return "(no redis log)"
        return "redis-server log:\n" + "\n".join(tail)
