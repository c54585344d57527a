from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_verdant import Verdant
from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET
from .realtime_helpers import Harness
from .redis_server import RedisServer


@pytest.fixture
def database_file(tmp_path: Path) -> str:
    return str(tmp_path / "verdant.sqlite3")


@pytest.fixture
def make_app(database_file: str) -> Callable[..., Flask]:
    def make(config: dict[str, Any] | None = None, **options: Any) -> Flask:
        app = Flask("verdant-test")
        # The global ack goes out at once, so a test sees what its acknowledgements make; the
        # wait has its own tests (test_global_ack.py).
        app.config.update(
            {"TESTING": True, "VERDANT_GLOBAL_ACK_DELAY_SECONDS": 0.0, **(config or {})}
        )
        options.setdefault("database_file", database_file)
        options.setdefault("token_secret", SECRET)
        Verdant(app, **options)
        return app

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def replica(app: Flask) -> Callable[..., VerdantTestClient]:
    def make(user_id: str, library_id: str = "lib", **options: Any) -> VerdantTestClient:
        return VerdantTestClient(app, library_id=library_id, user_id=user_id, **options)

    return make


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests that share it use their own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def harness(make_app: Callable[..., Flask]) -> Iterator[Harness]:
    """Apps served on real sockets, and websockets to them, closed (sockets first) after."""
    with ExitStack() as stack:
        h = Harness(make_app, stack)
        stack.callback(h.close_sockets)
        yield h
