"""Fixtures for the interop suite: driver bundles, a live server process, Node drivers.

Target server (environment):

- ``VERDANT_INTEROP_TARGET=flask`` (default): ``gunicorn -k gevent -w 1`` running
  ``tests.interop.server_app:create_app()``, i.e. flask-verdant.
- ``VERDANT_INTEROP_TARGET=reference``: the official ``@verdant-web/server`` 2.1.2 hosted by
  ``host.mjs`` in ``VERDANT_REFERENCE_DIR`` (default ``benchmarks/reference_server``, which needs
  its own ``npm ci``). Used to validate the tests themselves.
- ``VERDANT_INTEROP_SERVER_ROOT``: the directory gunicorn imports ``flask_verdant`` and
  ``tests.interop.server_app`` from (default: this checkout), e.g. a ``git archive`` of a commit.

Each test gets a fresh server process with a fresh sqlite file in ``tmp_path`` and a fresh Node
driver; on failure the server log, the driver's stderr and every client's wire trace are printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .driver import (
    BUILD_DIR,
    JS_DIR,
    STORE_VERSIONS,
    NodeDriver,
    bundle_path,
    format_trace,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "interop-secret-of-32-bytes-or-more"
TARGET = os.environ.get("VERDANT_INTEROP_TARGET", "flask")
# Where gunicorn imports flask_verdant and tests.interop.server_app from (default: this checkout).
# Point it at an extracted commit (git archive) to test a snapshot while the tree is being edited.
SERVER_ROOT = Path(os.environ.get("VERDANT_INTEROP_SERVER_ROOT", REPO))
REFERENCE_DIR = Path(
    os.environ.get("VERDANT_REFERENCE_DIR", REPO / "benchmarks" / "reference_server")
)

# Ports Node's fetch refuses ("bad port"), at least those an OS could hand out above 1023.
NODE_BAD_PORTS = {
    1719,
    1720,
    1723,
    2049,
    3659,
    4045,
    4190,
    5060,
    5061,
    6000,
    6566,
    6665,
    6666,
    6667,
    6668,
    6669,
    6679,
    6697,
    10080,
}


# -- reports, so fixtures know whether the test failed -------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def failed_in(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


# -- driver bundles ------------------------------------------------------------------------------
def _bundle_inputs() -> list[Path]:
    inputs = [*JS_DIR.glob("*.mjs")]
    for lock in (
        REPO / "node_modules" / ".package-lock.json",
        REPO / "tests" / "store5" / "node_modules" / ".package-lock.json",
    ):
        if lock.exists():
            inputs.append(lock)
    return inputs


@pytest.fixture(scope="session")
def driver_bundles() -> dict[str, Path]:
    """Build ``js/build/driver-<version>.mjs`` once per session if missing or stale."""
    if shutil.which("node") is None:
        pytest.fail("the interop tests need Node 20 on PATH (see README: bash .ci/run)")
    newest_input = max(p.stat().st_mtime for p in _bundle_inputs())
    stale = [
        v
        for v in STORE_VERSIONS
        if not bundle_path(v).exists() or bundle_path(v).stat().st_mtime < newest_input
    ]
    if stale:
        BUILD_DIR.mkdir(exist_ok=True)
        result = subprocess.run(
            ["node", str(JS_DIR / "build.mjs"), *stale],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"building the driver bundles failed:\n{result.stdout}\n{result.stderr}")
    return {v: bundle_path(v) for v in STORE_VERSIONS}


@pytest.fixture(params=STORE_VERSIONS, ids=lambda v: f"store-{v}")
def store_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the live server -----------------------------------------------------------------------------
def _free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in NODE_BAD_PORTS:
            return port
    raise RuntimeError("no usable free port")


def _gunicorn() -> str:
    candidate = Path(sys.executable).parent / "gunicorn"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("gunicorn")
    if found:
        return found
    return "/work/venv/bin/gunicorn"


class LiveServer:
    """A real server process listening on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        target: str = TARGET,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        port: int = 0,
        gunicorn_args: tuple[str, ...] = (),
    ) -> None:
        """``port``: a port chosen beforehand (e.g. for hosts that name each other), else a free
        one at each start; ``gunicorn_args``: more options for gunicorn."""
        self.workdir = workdir
        self.target = target
        self.workers = workers
        self.env = dict(env or {})
        self.database_file = workdir / "verdant.sqlite3"
        self.log_file = workdir / f"server-{target}.log"
        self.fixed_port = port
        self.gunicorn_args = gunicorn_args
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle
    def start(self, timeout: float = 30.0) -> None:
        for _attempt in range(3):
            if self._start_once(timeout):
                return
        raise RuntimeError(f"the {self.target} server did not start\n{self.log_tail()}")

    def environment(self) -> dict[str, str]:
        """The server's environment (also right for a ``flask`` command on the same app)."""
        return {
            **os.environ,
            "VERDANT_DATABASE_FILE": str(self.database_file),
            "VERDANT_TOKEN_SECRET": TOKEN_SECRET,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(SERVER_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            **self.env,
        }

    def _start_once(self, timeout: float) -> bool:
        env = self.environment()
        if self.target == "flask":
            self.port = self.fixed_port or _free_port()
            command = [
                _gunicorn(),
                "-k", "gevent",
                "-w", str(self.workers),
                "--bind", f"127.0.0.1:{self.port}",
                "--chdir", str(SERVER_ROOT),
                "--graceful-timeout", "3",
                "--access-logfile", "-",
                # The time each request took, so a failure shows a slow answer.
                "--access-logformat", '%(t)s "%(r)s" %(s)s %(B)s %(M)sms',
                "--error-logfile", "-",
                *self.gunicorn_args,
                "tests.interop.server_app:create_app()",
            ]  # fmt: skip
            cwd = SERVER_ROOT
        elif self.target == "reference":
            host = REFERENCE_DIR / "host.mjs"
            if not (REFERENCE_DIR / "node_modules" / "@verdant-web" / "server").exists():
                raise RuntimeError(
                    f"the reference server is not installed in {REFERENCE_DIR} (npm ci there)"
                )
            self.port = 0
            env["PORT"] = "0"
            command = ["node", str(host)]
            cwd = REFERENCE_DIR
        else:
            raise RuntimeError(f"unknown VERDANT_INTEROP_TARGET {self.target!r}")

        with self.log_file.open("ab") as log:
            log.write(f"==== {' '.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                address_in_use = "in use" in self.log().lower()
                self._proc = None
                if address_in_use:
                    return False
                raise RuntimeError(f"the {self.target} server exited\n{self.log_tail()}")
            if self.target == "reference" and not self.port:
                for line in self.log().splitlines():
                    if line.startswith("listening on http://"):
                        self.port = int(line.rsplit(":", 1)[1])
            if self.port:
                try:
                    if requests.get(f"{self.url}/health", timeout=1).ok:
                        return True
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the {self.target} server did not answer in {timeout}s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- addresses and admin
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sync_url(self) -> str:
        return f"{self.url}/sync"

    def auth_url(self, library: str, user: str) -> str:
        return f"{self.url}/auth/{library}?user={user}"

    def evict(self, library: str) -> None:
        response = requests.post(f"{self.url}/test-admin/evict/{library}", timeout=10)
        response.raise_for_status()

    def info(self, library: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/test-admin/info/{library}", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    # ---- logs
    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        tail = self.log().splitlines()[-lines:]
        return (
            f"{self.target} server log (last {len(tail)} lines of {self.log_file}):\n"
            + "\n".join(tail)
        )


@pytest.fixture
def live_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A real server process (see the module docstring for the target) with a fresh database."""
    server = LiveServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if failed_in(request):
            print(server.log_tail())


def _trace_excerpt(entries: list[dict[str, Any]]) -> str:
    """The first and last wire-trace entries (INTEROP_TRACE_HEAD / INTEROP_TRACE_TAIL, 15 / 25)."""
    head = int(os.environ.get("INTEROP_TRACE_HEAD", 15))
    tail = int(os.environ.get("INTEROP_TRACE_TAIL", 25))
    if len(entries) <= head + tail:
        return format_trace(entries)
    omitted = len(entries) - head - tail
    return "\n".join(
        [
            format_trace(entries[:head]),
            f"    ... {omitted} entries omitted ...",
            format_trace(entries[-tail:]),
        ]
    )


@pytest.fixture
def node_driver(
    store_version: str, driver_bundles: dict[str, Path], request: pytest.FixtureRequest
) -> Iterator[NodeDriver]:
    """A Node process running real clients of ``store_version``; all closed at teardown."""
    driver = NodeDriver(store_version)
    try:
        yield driver
    finally:
        close_driver(driver, failed_in(request))


def close_driver(driver: NodeDriver, failed: bool) -> None:
    """Close ``driver``; after a failure, print each client's status, wire trace and stderr."""
    traces: list[str] = []
    if failed:
        for name in list(driver.clients):
            try:
                status = driver.call("status", name=name, timeout=5)
                entries = driver.trace(name, limit=4000)
                traces.append(f"---- wire trace of {name} {status}\n{_trace_excerpt(entries)}")
            except Exception as error:  # the driver may be the thing that broke
                traces.append(f"---- wire trace of {name} unavailable: {error}")
    driver.close()
    if failed:
        print("\n".join(traces))
        print(driver.stderr_tail(200))
