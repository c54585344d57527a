"""Python side of the Node driver (``js/driver.mjs``) that runs real Verdant clients.

One :class:`NodeDriver` is one Node process holding any number of clients. Commands are JSON
lines with a request id; replies may come back out of order and are matched by id. Everything
Node writes to stderr is kept and shown when something fails.

Never sleep for a fixed time in tests: use :func:`wait_until`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "js"
BUILD_DIR = JS_DIR / "build"
STORE_VERSIONS = ("3.6.3", "3.2.1", "5.5.0")

T = TypeVar("T")


def bundle_path(store_version: str) -> Path:
    return BUILD_DIR / f"driver-{store_version}.mjs"


class DriverError(Exception):
    """A command failed inside the driver, or the driver process died or timed out."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 15.0,
    *,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value.

    Returns that value. Raises ``AssertionError`` once ``timeout`` seconds have passed, with
    ``message`` (a string or a callable producing one, evaluated only on failure) and the last
    value or exception seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            last, last_error = value, None
            if value:
                return value
        except DriverError:
            raise
        except Exception as error:  # keep polling; report it if we time out
            last_error = error
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.1f}s: {text}\n{detail}")
        time.sleep(interval)


class NodeDriver:
    """A running ``driver-<version>.mjs`` process."""

    def __init__(
        self,
        store_version: str,
        *,
        node: str = "node",
        env: dict[str, str] | None = None,
        stderr_lines: int = 4000,
    ) -> None:
        self.store_version = store_version
        path = bundle_path(store_version)
        if not path.exists():
            raise DriverError(f"{path} is missing; run: node {JS_DIR / 'build.mjs'}")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._replies: dict[int, dict[str, Any]] = {}
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._stdout_noise: list[str] = []
        self._closed = False
        self._proc = subprocess.Popen(
            [node, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        ready = self._wait_reply(0, timeout=30)
        if not ready.get("ok"):
            raise DriverError(f"driver did not start: {ready}\n{self.stderr_tail()}")
        self.clients: dict[str, Client] = {}

    # -- process plumbing ------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                reply = json.loads(line)
                reply_id = reply["id"]
            except (ValueError, KeyError, TypeError):
                self._stdout_noise.append(line)
                self._stderr.append(f"[stdout, not a reply] {line}")
                continue
            with self._lock:
                if reply_id is None:
                    self._stderr.append(f"[reply without id] {line}")
                else:
                    self._replies[reply_id] = reply
                self._replied.notify_all()
        with self._lock:
            self._replied.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _wait_reply(self, request_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while request_id not in self._replies:
                if self._proc.poll() is not None and not self._reader.is_alive():
                    raise DriverError(
                        f"driver exited with code {self._proc.returncode}\n{self.stderr_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DriverError(
                        f"no reply to request {request_id} within {timeout}s\n{self.stderr_tail()}"
                    )
                self._replied.wait(min(remaining, 0.5))
            return self._replies.pop(request_id)

    def call(self, cmd: str, timeout: float = 30.0, **args: Any) -> Any:
        """Run one driver command and return its result; raise :class:`DriverError` on error."""
        if self._closed:
            raise DriverError("driver is closed")
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "cmd": cmd, "args": args})
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise DriverError(f"driver is gone ({error})\n{self.stderr_tail()}") from error
        reply = self._wait_reply(request_id, timeout)
        if not reply.get("ok"):
            raise DriverError(
                f"{cmd}({json.dumps(args)[:500]}) failed: {reply.get('error')}\n"
                f"{reply.get('stack') or ''}"
            )
        return reply.get("result")

    def stderr_text(self) -> str:
        return "\n".join(self._stderr)

    def stderr_tail(self, lines: int = 60) -> str:
        tail = list(self._stderr)[-lines:]
        if not tail:
            return "(driver stderr is empty)"
        return "driver stderr (last lines):\n" + "\n".join(tail)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self, timeout: float = 20.0) -> None:
        """Close every client and end the process (killing it if it does not exit)."""
        if self._closed:
            return
        try:
            if self._proc.poll() is None:
                with contextlib.suppress(DriverError):
                    self.call("exit", timeout=timeout)
        finally:
            self._closed = True
            try:
                if self._proc.stdin:
                    self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._reader.join(timeout=5)
            self._err_reader.join(timeout=5)

    def __enter__(self) -> NodeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients -----------------------------------------------------------------------------
    def open_client(
        self,
        name: str,
        *,
        auth_url: str,
        user: str | None = None,
        library: str | None = None,
        transport: str = "pull",
        pull_interval: int = 300,
        device: str | None = None,
        start: bool = True,
        presence: dict[str, Any] | None = None,
        profile: dict[str, Any] | None = None,
        automatic_transport_selection: bool | None = False,
    ) -> Client:
        """Open a client. The same ``device`` key reopens the same local database (replica).

        ``automatic_transport_selection=None`` leaves the store's default (on): it moves
        between pull and realtime by itself, so tests that depend on the transport turn it off.
        """
        info = self.call(
            "open",
            name=name,
            user=user,
            library=library,
            authUrl=auth_url,
            transport=transport,
            pullInterval=pull_interval,
            device=device or name,
            start=start,
            presence=presence or {},
            profile=profile or {},
            automaticTransportSelection=automatic_transport_selection,
        )
        client = Client(self, name, info)
        self.clients[name] = client
        return client

    def trace(self, name: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        return list(self.call("trace", name=name, limit=limit))

    def close_all(self) -> None:
        self.call("close_all")
        self.clients.clear()


class Client:
    """One real client inside a :class:`NodeDriver`."""

    def __init__(self, driver: NodeDriver, name: str, info: dict[str, Any]) -> None:
        self.driver = driver
        self.name = name
        self.replica_id: str | None = info.get("replicaId")
        self.device: str = info.get("device", name)

    def __repr__(self) -> str:
        return f"<Client {self.name} replica={self.replica_id}>"

    def _call(self, cmd: str, **args: Any) -> Any:
        return self.driver.call(cmd, name=self.name, **args)

    # sync control
    def start(self) -> None:
        self._call("start")

    def stop(self) -> None:
        self._call("stop")

    def set_mode(self, transport: str) -> None:
        self._call("set_mode", transport=transport)

    def close(self) -> None:
        self._call("close")
        self.driver.clients.pop(self.name, None)

    # documents
    def put(self, doc: dict[str, Any], *, private: bool = False) -> dict[str, Any]:
        return dict(self._call("put", doc=doc, private=private))

    def list_set(
        self, doc_id: str, path: str | list[str], index: int, value: Any
    ) -> dict[str, Any]:
        return dict(self._call("list_set", id=doc_id, path=path, index=index, value=value))

    def put_many(self, docs: list[dict[str, Any]]) -> list[str]:
        return list(self._call("put_many", docs=docs))

    def update(self, doc_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("update", id=doc_id, fields=fields))

    def delete(self, doc_id: str) -> None:
        self._call("delete", id=doc_id)

    def set(self, doc_id: str, path: str | list[str], value: Any) -> dict[str, Any]:
        return dict(self._call("set", id=doc_id, path=path, value=value))

    def push(self, doc_id: str, path: str | list[str], value: Any) -> dict[str, Any]:
        return dict(self._call("push", id=doc_id, path=path, value=value))

    def remove_from_list(self, doc_id: str, path: str | list[str], value: Any) -> dict[str, Any]:
        return dict(self._call("remove_from_list", id=doc_id, path=path, value=value))

    def get(self, doc_id: str) -> dict[str, Any] | None:
        result = self._call("get", id=doc_id)
        return dict(result) if result is not None else None

    def read(self) -> list[dict[str, Any]]:
        """All documents as plain JSON, deep, sorted by id."""
        return list(self._call("read"))

    def history(self) -> dict[str, list[dict[str, str]]]:
        """The oid and timestamp of every operation and baseline the client stored."""
        return dict(self._call("history"))

    def read_stored(self) -> list[dict[str, Any]]:
        """All documents as this client stored them, loaded afresh (store 3.x), sorted by id.

        Read by a second, local-only client on the same device, so the result does not depend
        on this client's entity views and query indexes, which can miss data the client stored
        (docs/protocol.md, "Known client defects")."""
        return list(self._call("read_stored"))

    def count(self) -> int:
        """How many documents the client holds; cheaper than :meth:`read` on a large library."""
        return int(self._call("count"))

    # status and presence
    def status(self) -> dict[str, Any]:
        status = dict(self._call("status"))
        self.replica_id = status.get("replicaId") or self.replica_id
        return status

    @property
    def is_connected(self) -> bool:
        return bool(self.status()["isConnected"])

    def presence(self) -> dict[str, Any]:
        return dict(self._call("presence"))

    def update_presence(self, presence: dict[str, Any]) -> None:
        self._call("update_presence", presence=presence)

    def set_view(self, view_id: str) -> None:
        self._call("set_view", viewId=view_id)

    def view_peers(self) -> list[str]:
        return list(self._call("view_peers"))

    def trace(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(self._call("trace", limit=limit))

    def wait_online(self, timeout: float = 15.0, sync_responses: int = 2) -> dict[str, Any]:
        """Wait until the client is connected and has received ``sync_responses`` sync answers.

        Two answers by default: the pull transport only sends local operations once it has
        handled a first ``sync-resp`` (docs/protocol.md, R1-R7), and the second answer comes a
        poll later, when the first one has surely been handled.
        """
        return wait_until(
            lambda: (
                s
                if (s := self.status())["isConnected"] and s["syncResponses"] >= sync_responses
                else None
            ),
            timeout,
            message=f"{self.name} did not come online",
        )


def format_trace(entries: list[dict[str, Any]], *, full: bool = False, width: int = 400) -> str:
    """Render wire-trace entries (from ``NodeDriver.trace``) as readable lines."""
    lines = []
    for entry in entries:
        head = f"#{entry.get('seq')} t={entry.get('t')}ms {entry.get('kind')}"
        if "status" in entry:
            head += f" {entry['status']} in {entry.get('ms')}ms"
        if "error" in entry:
            head += f" ERROR {entry['error']}"
        lines.append(head)
        for direction, key in (("->", "request"), ("<-", "response")):
            messages = entry.get(key)
            if messages is None:
                continue
            if not isinstance(messages, list):
                messages = [messages]
            for message in messages:
                text = json.dumps(message if full else summarize_message(message))
                if not full and len(text) > width:
                    text = text[:width] + "..."
                lines.append(f"    {direction} {text}")
    return "\n".join(lines)


def summarize_message(message: Any) -> Any:
    """A short form of a protocol message: operation and baseline lists become counts + oids."""
    if not isinstance(message, dict):
        return message
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in ("operations", "baselines") and isinstance(value, list):
            oids = sorted({str(item.get("oid", "?")) for item in value if isinstance(item, dict)})
            stamps = [
                str(item["timestamp"])
                for item in value
                if isinstance(item, dict) and item.get("timestamp")
            ]
            out[key] = {
                "count": len(value),
                "oids": oids[:6] + (["..."] if len(oids) > 6 else []),
                "timestamps": [min(stamps), max(stamps)] if stamps else [],
            }
        elif key in ("peerPresence", "userInfo", "presence") and isinstance(value, dict):
            out[key] = value if len(json.dumps(value)) < 200 else f"<{len(value)} entries>"
        else:
            out[key] = value
    return out
