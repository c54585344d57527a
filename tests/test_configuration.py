"""Configuration as in Flask-SQLAlchemy: defaults in app.config, relative paths in instance/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from flask import Flask

from flask_verdant import LocalFileStorage, Verdant
from flask_verdant.server import SyncServer
from flask_verdant.settings import config_defaults

from .helpers import SECRET

ROOT = Path(__file__).resolve().parent.parent


def _server(app: Flask) -> SyncServer:
    server: SyncServer = app.extensions["verdant"]
    return server


def test_relative_database_and_file_paths_are_under_the_instance_folder(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = Flask("configured", instance_path=str(instance))
    app.config["VERDANT_DATABASE_FILE"] = "data/verdant.sqlite3"
    Verdant(app, token_secret=SECRET, file_storage=LocalFileStorage("uploads"))
    server = _server(app)
    assert server.database.path == str(instance / "data" / "verdant.sqlite3")
    assert (instance / "data").is_dir()
    assert server.files.storage is not None
    assert isinstance(server.files.storage, LocalFileStorage)
    assert server.files.storage.root == instance / "uploads"


def test_a_file_storage_path_in_the_config_is_a_local_storage(tmp_path: Path) -> None:
    app = Flask("configured", instance_path=str(tmp_path))
    app.config.update(
        VERDANT_DATABASE_FILE=str(tmp_path / "absolute.sqlite3"),
        VERDANT_TOKEN_SECRET=SECRET,
        VERDANT_FILE_STORAGE="files",
    )
    Verdant(app)
    server = _server(app)
    assert server.database.path == str(tmp_path / "absolute.sqlite3")
    assert isinstance(server.files.storage, LocalFileStorage)
    assert server.files.storage.root == tmp_path / "files"


def test_every_key_is_in_app_config_with_its_default_and_set_values_are_kept(
    tmp_path: Path,
) -> None:
    app = Flask("configured", instance_path=str(tmp_path))
    app.config.update(VERDANT_TOKEN_SECRET=SECRET, VERDANT_POOL_SIZE=3)
    Verdant(app, database_file="verdant.sqlite3")
    for key, default in config_defaults().items():
        assert key in app.config
        if key not in ("VERDANT_POOL_SIZE", "VERDANT_TOKEN_SECRET"):
            assert app.config[key] == default, key
    assert app.config["VERDANT_POOL_SIZE"] == 3
    assert _server(app).settings.pool_size == 3
    assert app.config["VERDANT_URL_PREFIX"] == "/sync"


def test_the_configuration_page_lists_every_setting() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in config_defaults() if f"`{key}`" not in page]
    assert missing == []


PROJECT_APP = textwrap.dedent(
    f"""
    from flask import Flask
    from flask_verdant import Verdant

    app = Flask(__name__)
    app.config["VERDANT_DATABASE_FILE"] = "verdant.sqlite3"
    app.config["VERDANT_TOKEN_SECRET"] = {SECRET!r}
    Verdant(app)
    """
)

WRITE = textwrap.dedent(
    """
    from app import app
    from flask_verdant.testing import VerdantTestClient

    client = VerdantTestClient(app, library_id="lib", user_id="ada")
    client.sync()
    client.op(client.operation("items/one", {"op": "initialize", "value": {"id": "one"}}))
    """
)


def test_the_cli_run_from_another_directory_opens_the_same_database(tmp_path: Path) -> None:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "app.py").write_text(PROJECT_APP, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    written = subprocess.run(
        [sys.executable, "-c", WRITE],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    assert (project / "instance" / "verdant.sqlite3").exists()
    info = subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(project / "app.py"), "verdant", "info", "lib"],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["operationsCount"] == 1
    assert list(elsewhere.iterdir()) == []
