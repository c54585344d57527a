from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_verdant import Verdant
from flask_verdant.profiles import ProfileCache
from flask_verdant.server import SyncServer
from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET


def test_settings_fall_back_to_config(tmp_path: Path) -> None:
    app = Flask("cfg")
    app.config.update(
        VERDANT_DATABASE_FILE=str(tmp_path / "x.sqlite3"),
        VERDANT_TOKEN_SECRET=SECRET,
        VERDANT_URL_PREFIX="/api/verdant",
        VERDANT_REPLICA_TRUANCY_MINUTES=5,
    )
    Verdant(app)
    server = app.extensions["verdant"]
    assert isinstance(server, SyncServer)
    assert server.settings.url_prefix == "/api/verdant"
    assert server.settings.replica_truancy_minutes == 5
    client = VerdantTestClient(app, library_id="l", user_id="u")
    assert client.url == "/api/verdant"
    assert client.sync()[0]["type"] == "sync-resp"


def test_arguments_win_over_config(tmp_path: Path) -> None:
    app = Flask("args")
    app.config.update(VERDANT_DATABASE_FILE="/nonexistent/never.sqlite3", VERDANT_TOKEN_SECRET="x")
    Verdant(app, database_file=str(tmp_path / "y.sqlite3"), token_secret=SECRET)
    assert app.extensions["verdant"].settings.token_secret == SECRET


@pytest.mark.parametrize(
    ("config", "message"),
    [({"VERDANT_TOKEN_SECRET": SECRET}, "database"), ({"VERDANT_DATABASE_FILE": "x"}, "secret")],
)
def test_missing_required_setting_is_a_clear_error(config: dict[str, str], message: str) -> None:
    app = Flask("missing")
    app.config.update(config)
    with pytest.raises(RuntimeError, match=message):
        Verdant().init_app(app)


def test_one_extension_serves_several_apps(tmp_path: Path) -> None:
    verdant = Verdant(token_secret=SECRET)
    apps = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config["VERDANT_DATABASE_FILE"] = str(tmp_path / f"{name}.sqlite3")
        verdant.init_app(app)
        apps.append(app)
    VerdantTestClient(apps[0], library_id="l", user_id="u").sync(
        operations=[{"oid": "items/a", "timestamp": "t", "data": {"op": "delete"}}]
    )
    for app, expected in zip(apps, (1, 0), strict=True):
        with app.app_context():
            assert verdant.get_library_info("l")["operationsCount"] == expected
    assert not hasattr(verdant, "app")


def test_admin_methods_need_an_app_context(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="application context"):
        Verdant().get_library_info("l")


def test_profiles_object_with_get_and_cache_bound() -> None:
    calls: list[str] = []

    class Directory:
        def get(self, user_id: str) -> dict[str, str]:
            calls.append(user_id)
            return {"id": user_id, "name": "N"}

    cache = ProfileCache(Directory(), max_entries=2)
    for user in ("a", "a", "b", "c", "a"):
        cache.get(user)
    assert calls == ["a", "b", "c", "a"]
    assert len(cache) == 2


def test_profiles_default_to_the_user_id() -> None:
    assert ProfileCache(None).get("zoe") == {"id": "zoe"}


def test_cli_info_prints_json(app: Flask, replica: Callable[..., VerdantTestClient]) -> None:
    replica("alice").sync()
    result = app.test_cli_runner().invoke(args=["verdant", "info", "lib"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert [r["userId"] for r in info["replicas"]] == ["alice"]
    assert info["latestServerOrder"] == 0


def test_cli_evict_asks_first(app: Flask, replica: Callable[..., VerdantTestClient]) -> None:
    alice = replica("alice")
    alice.sync(operations=[alice.operation("items/a", {"op": "delete"})])
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["verdant", "evict", "lib"], input="n\n")
    assert refused.exit_code != 0
    with app.app_context():
        assert app.extensions["verdant"].library_info("lib")["operationsCount"] == 1
    done = runner.invoke(args=["verdant", "evict", "lib", "--yes"])
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert app.extensions["verdant"].library_info("lib")["operationsCount"] == 0


@pytest.mark.parametrize(("text", "expected"), [("0", False), ("false", False), ("1", True)])
def test_flags_from_text_config_mean_what_they_say(
    tmp_path: Path, text: str, expected: bool
) -> None:
    app = Flask("flags")
    app.config.update(
        VERDANT_DATABASE_FILE=str(tmp_path / "f.sqlite3"),
        VERDANT_TOKEN_SECRET=SECRET,
        VERDANT_DISABLE_REBASING=text,
    )
    Verdant(app)
    assert app.extensions["verdant"].settings.disable_rebasing is expected
