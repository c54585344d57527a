"""A server killed in the middle of a compaction pass loses nothing and applies nothing twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET, catch_up, dump_database
from .test_compaction import init

CHILD = textwrap.dedent(
    """
    import sys, time
    from flask import Flask
    import flask_verdant.compaction as compaction
    from flask_verdant import Verdant

    database_file, marker, secret = sys.argv[1:4]
    fold = compaction._fold_document
    folded = []

    def slow_fold(*args, **kwargs):
        fold(*args, **kwargs)
        folded.append(1)
        if len(folded) == 40:
            open(marker, "w").close()
            time.sleep(60)

    compaction._fold_document = slow_fold
    app = Flask("crash")
    Verdant(app, database_file=database_file, token_secret=secret, disable_rebasing=True)
    app.extensions["verdant"].compact("lib")
    """
)


def baselines(app: Flask) -> dict[str, object]:
    client = VerdantTestClient(app, library_id="lib", user_id=f"reader-{time.monotonic_ns()}")
    (response,) = [m for m in client.sync() if m["type"] == "sync-resp"]
    assert response["operations"] == []
    return {b["oid"]: b["snapshot"] for b in response["baselines"]}


def test_killed_pass_leaves_history_intact_and_a_rerun_folds_it_once(
    make_app: Callable[..., Flask], database_file: str, tmp_path: Path
) -> None:
    app = make_app(disable_rebasing=True)
    alice = VerdantTestClient(app, library_id="lib", user_id="alice")
    bob = VerdantTestClient(app, library_id="lib", user_id="bob")
    alice.sync(operations=[init(alice, "items/seed", {"id": "seed"})])
    bob.sync()
    for n in range(50):
        oid = f"items/{n:02}"
        tags = f"{oid}:tags"
        alice.op(
            init(alice, oid, {"id": str(n), "tags": {"@@type": "ref", "id": tags}}),
            init(alice, tags, []),
            alice.operation(tags, {"op": "list-push", "value": "pushed-once"}),
        )
    catch_up(alice, bob, alice, bob)
    app.extensions["verdant"].close()
    before = dump_database(database_file)
    reference_file = str(tmp_path / "reference.sqlite3")
    shutil.copy(database_file, reference_file)

    marker = tmp_path / "halfway"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_file, str(marker), SECRET],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, "the compaction process ended before the kill"
            assert time.monotonic() < deadline, "the compaction pass never got halfway"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)

    assert dump_database(database_file) == before, "a killed pass must leave no trace"

    restarted = make_app(disable_rebasing=True)
    assert restarted.extensions["verdant"].compact("lib").folded_operations == 151
    reference = make_app(database_file=reference_file, disable_rebasing=True)
    reference.extensions["verdant"].compact("lib")
    folded = baselines(restarted)
    assert folded == baselines(reference)
    assert folded["items/07:tags"] == ["pushed-once"], "a list push must apply exactly once"
