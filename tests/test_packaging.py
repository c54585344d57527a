"""What a user installs: declared dependencies, metadata, the license, and an sdist that tests."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import flask_verdant

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_verdant"


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _requirement_names(block: str) -> set[str]:
    names = set()
    for line in block.strip().splitlines():
        name = line.strip().split(";")[0]
        for separator in "<>=![ ":
            name = name.split(separator)[0]
        if name:
            names.add(_normalize(name))
    return names


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-")


# Modules of the package that are themselves imported only where their extra is used (the
# Redis broker, when VERDANT_MESSAGE_QUEUE is set): their imports count as optional.
OPTIONAL_MODULES = {"redis_broker.py": "redis", "redis_presence.py": "redis"}


def _third_party_imports() -> tuple[set[str], set[str]]:
    """Top-level modules the package imports: (at module level, only inside functions)."""
    eager: set[str] = set()
    lazy: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = set() if path.name in OPTIONAL_MODULES else set(map(id, tree.body))
        typing_only = {
            id(inner)
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                if root in sys.stdlib_module_names or root == "flask_verdant":
                    continue
                (eager if id(node) in top_level else lazy).add(root)
    return eager, lazy - eager


def _distributions(modules: set[str]) -> set[str]:
    mapping = importlib.metadata.packages_distributions()
    found: set[str] = set()
    for module in modules:
        assert module in mapping, f"{module} is imported but not installed"
        found.update(_normalize(name) for name in mapping[module])
    return found


def test_optional_modules_are_imported_only_where_they_are_used() -> None:
    """No module imports an optional one at module level, so the extra stays optional."""
    names = {name.removesuffix(".py") for name in OPTIONAL_MODULES}
    for path in PACKAGE.rglob("*.py"):
        if path.name in OPTIONAL_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[-1] not in names, f"{path.name} imports {node.module}"
    extras = _setup_cfg()["options.extras_require"]
    for extra in OPTIONAL_MODULES.values():
        assert extra in extras


def test_every_module_level_import_is_a_declared_dependency() -> None:
    eager, _ = _third_party_imports()
    required = _requirement_names(_setup_cfg()["options"]["install_requires"])
    assert _distributions(eager) - required == set()


def test_optional_imports_are_declared_in_an_extra() -> None:
    """A module imported only where it is used must still be installable, through an extra."""
    _, lazy = _third_party_imports()
    extras = _setup_cfg()["options.extras_require"]
    optional = set().union(*(_requirement_names(extras[name]) for name in extras))
    required = _requirement_names(_setup_cfg()["options"]["install_requires"])
    assert _distributions(lazy) - optional - required == set()


def test_gevent_is_not_loaded_by_an_app_that_does_not_use_it(tmp_path: Path) -> None:
    """``flask run`` and sync workers never import gevent, even to store a file."""
    script = f"""
import io, sys
from flask import Flask
from flask_verdant import LocalFileStorage, Verdant
from flask_verdant.testing import VerdantTestClient
app = Flask("plain")
Verdant(app, database_file={str(tmp_path / "db.sqlite3")!r}, token_secret="s" * 32,
        file_storage=LocalFileStorage({str(tmp_path / "files")!r}))
client = VerdantTestClient(app, library_id="lib", user_id="ada")
client.sync()
answer = app.test_client().post(
    "/sync/files/f1", headers={{"Authorization": "Bearer " + client.token}},
    data={{"file": (io.BytesIO(b"bytes"), "a.txt", "text/plain"), "id": "f1",
          "name": "a.txt", "type": "text/plain"}})
assert answer.status_code == 200, answer.get_data(as_text=True)
print(sorted(name for name in sys.modules if name.split(".")[0] == "gevent"))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_version_and_metadata() -> None:
    metadata = importlib.metadata.metadata("flask-verdant")
    assert flask_verdant.__version__ == metadata["Version"]
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "License :: OSI Approved :: MIT License" in classifiers
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert {"Source", "Documentation", "Issues"} <= set(urls)
    assert metadata["License"] == "MIT"
    assert (PACKAGE / "py.typed").exists()


def test_license_file_is_the_mit_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


@pytest.mark.slow
def test_the_sdist_carries_its_tests_and_they_pass(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert build.returncode == 0, build.stderr
    name = build.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / "dist" / name) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (source,) = (tmp_path / "src").iterdir()
    for needed in (
        "LICENSE",
        "flask_verdant/py.typed",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/realtime_helpers.py",
        "tests/interop/js/driver.mjs",
        "docs/protocol.md",
        "package-lock.json",
    ):
        assert (source / needed).exists(), needed
    environment = {**os.environ, "PYTHONPATH": str(source)}
    where = subprocess.run(
        [sys.executable, "-c", "import flask_verdant; print(flask_verdant.__file__)"],
        capture_output=True,
        text=True,
        cwd=source,
        env=environment,
    )
    assert where.stdout.strip().startswith(str(source))
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_docs.py",
            "tests/test_sync_protocol.py",
            "tests/test_readme.py",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=source,
        env=environment,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout
