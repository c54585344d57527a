"""Health and readiness routes, Prometheus metrics and blinker signals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from flask_verdant import Verdant, signals
from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET
from .realtime_helpers import Socket, serving, sync_server, wait_for


def scrape(
    app: Flask, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = app.test_client().get("/sync/metrics", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def returning_sync(client: VerdantTestClient) -> list[dict[str, Any]]:
    """The sync of a replica that synced before, as after a reconnect."""
    return client.sync(since=client.clock.now(), resync_all=False)


def item(client: VerdantTestClient, name: str) -> dict[str, Any]:
    return client.operation(f"items/{name}", {"op": "initialize", "value": {"id": name}})


# -- health and readiness ------------------------------------------------------------------------


def test_health_answers_without_touching_anything(app: Flask) -> None:
    answer = app.test_client().get("/sync/health")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}


def test_ready_checks_the_database(app: Flask) -> None:
    answer = app.test_client().get("/sync/ready")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ready", "checks": {"database": True, "serving": True}}


def test_not_ready_when_the_database_cannot_be_read(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not an sqlite database" * 100)
    app = Flask("broken")
    Verdant(app, database_file=str(broken), token_secret=SECRET)
    client = app.test_client()
    assert client.get("/sync/health").status_code == 200
    answer = client.get("/sync/ready")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"] is False


def test_every_readiness_check_of_the_server_counts(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route asks ``SyncServer.ready()``; a component added there (a broker) gates it."""
    server = sync_server(app)
    checks = server.ready
    monkeypatch.setattr(server, "ready", lambda: {**checks(), "broker": False})
    answer = app.test_client().get("/sync/ready")
    assert answer.status_code == 503
    assert answer.get_json()["checks"] == {"database": True, "serving": True, "broker": False}


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_messages_refusals_operations_and_latency(
    app: Flask, replica: Callable[..., VerdantTestClient]
) -> None:
    ada = replica("ada")
    ada.sync()
    ada.op(item(ada, "one"), item(ada, "two"))
    refused = app.test_client().post(
        "/sync", json={"messages": []}, headers={"Authorization": "Bearer not-a-token"}
    )
    assert refused.status_code == 401
    metrics = scrape(app)
    http = ("transport", "http")
    assert metrics[("verdant_messages_total", (http, ("type", "sync")))] == 1
    assert metrics[("verdant_messages_total", (http, ("type", "op")))] == 1
    assert metrics[("verdant_refusals_total", (("code", "4011"), http))] == 1
    assert metrics[("verdant_operations_stored_total", ())] == 2
    assert metrics[("verdant_transaction_seconds_count", (("type", "op"),))] == 1
    assert metrics[("verdant_fanout_seconds_count", (("type", "sync"),))] == 1
    assert metrics[("verdant_database_bytes", ())] > 0
    assert metrics[("verdant_open_connections", (("transport", "websocket"),))] == 0


def test_metrics_count_compaction_eviction_and_restoration(
    app: Flask, replica: Callable[..., VerdantTestClient]
) -> None:
    ada = replica("ada")
    ada.sync()
    ada.op(item(ada, "one"))
    with app.app_context():
        sync_server(app).compact("lib")
        sync_server(app).evict_library("lib")
    metrics = scrape(app)
    assert metrics[("verdant_compaction_passes_total", ())] >= 1
    assert metrics[("verdant_evictions_total", ())] == 1
    assert metrics[("verdant_restorations_total", ())] == 0
    # The replica comes back: need-since, then its full history restores the library.
    assert [m["type"] for m in returning_sync(ada)] == ["need-since"]
    ada.send(ada.sync_message(since=None, resync_all=False, operations=[item(ada, "one")]))
    assert scrape(app)[("verdant_restorations_total", ())] == 1


def test_the_metrics_token_guards_the_route(make_app: Callable[..., Flask]) -> None:
    app = make_app({"VERDANT_METRICS_TOKEN": "scraper-secret"})
    client = app.test_client()
    assert client.get("/sync/metrics").status_code == 401
    wrong = client.get("/sync/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == 4011
    assert ("verdant_database_bytes", ()) in scrape(app, token="scraper-secret")


def test_without_prometheus_client_there_is_no_metrics_route(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    app = make_app()
    assert app.test_client().get("/sync/metrics").status_code == 404
    assert app.test_client().get("/sync/health").status_code == 200


def test_two_apps_in_one_process_count_separately(make_app: Callable[..., Flask]) -> None:
    first, second = make_app(), make_app()
    VerdantTestClient(first, library_id="lib", user_id="ada").sync()
    assert scrape(first)[("verdant_messages_total", (("transport", "http"), ("type", "sync")))]
    assert ("verdant_messages_total", (("transport", "http"), ("type", "sync"))) not in scrape(
        second
    )


# -- signals and connections ---------------------------------------------------------------------


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in (
        "replica_connected",
        "replica_disconnected",
        "operations_stored",
        "library_evicted",
        "library_restored",
        "compaction_done",
    ):

        def receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            events.append((name, {"sender": sender, **kwargs}))

        getattr(signals, name).connect(receiver)
        receivers.append((getattr(signals, name), receiver))
    yield events
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def test_signals_are_sent_with_the_app_as_sender(
    make_app: Callable[..., Flask], received: list[tuple[str, dict[str, Any]]]
) -> None:
    # Compaction only when asked, so that the order of the signals is known.
    app = make_app(disable_rebasing=True)
    ada = VerdantTestClient(app, library_id="lib", user_id="ada")
    ada.sync()
    one = item(ada, "one")
    ada.op(one)
    with app.app_context():
        sync_server(app).compact("lib")
        sync_server(app).evict_library("lib")
    returning_sync(ada)
    ada.send(ada.sync_message(since=None, resync_all=False, operations=[one]))
    # Other tests' apps may still be compacting in the background: keep this app's signals.
    received[:] = [(name, event) for name, event in received if event["sender"] is app]
    names = [name for name, _ in received]
    assert names == [
        "operations_stored",
        "compaction_done",
        "library_evicted",
        "operations_stored",
        "library_restored",
    ]
    stored = received[0][1]
    assert (stored["library_id"], stored["user_id"], stored["replica_id"]) == (
        "lib",
        "ada",
        ada.replica_id,
    )
    assert stored["operations"] == [one]
    assert received[2][1]["library_id"] == "lib"


def test_long_polls_count_as_open_connections_while_held(
    app: Flask,
    replica: Callable[..., VerdantTestClient],
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    ada = replica("ada")
    answer = ada.post({"messages": [ada.sync_message()]}, headers={"Prefer": "wait=1"})
    assert answer.headers["Preference-Applied"] == "wait=1"
    kinds = [
        (name, event["transport"])
        for name, event in received
        if "replica" in name and event["sender"] is app
    ]
    assert kinds == [
        ("replica_connected", "long-poll"),
        ("replica_disconnected", "long-poll"),
    ]
    assert scrape(app)[("verdant_open_connections", (("transport", "long-poll"),))] == 0


def test_websockets_are_counted_while_open_and_refused_frames_by_close_code(
    make_app: Callable[..., Flask], received: list[tuple[str, dict[str, Any]]]
) -> None:
    app = make_app()
    ada = VerdantTestClient(app, library_id="lib", user_id="ada")
    with serving(app) as address:
        socket = Socket(address, ada.token)
        try:
            key = ("verdant_open_connections", (("transport", "websocket"),))
            wait_for(lambda: scrape(app)[key] == 1)
            socket.send_raw("not json")
            assert socket.close_code() == 1003
            wait_for(lambda: scrape(app)[key] == 0)
        finally:
            socket.close()
        refusals = scrape(app)[
            ("verdant_refusals_total", (("code", "1003"), ("transport", "websocket")))
        ]
        assert refusals == 1
    kinds = [
        (name, event["transport"])
        for name, event in received
        if "replica" in name and event["sender"] is app
    ]
    assert kinds == [("replica_connected", "websocket"), ("replica_disconnected", "websocket")]


# -- the documentation ---------------------------------------------------------------------------

MONITORING = Path(__file__).resolve().parent.parent / "docs" / "monitoring.md"


def test_every_documented_metric_is_served_and_every_served_one_documented(app: Flask) -> None:
    documented = set(re.findall(r"^\| `(verdant_\w+)` \|", MONITORING.read_text(), re.MULTILINE))
    answer = app.test_client().get("/sync/metrics").get_data(as_text=True)
    served = {
        family.name
        for family in text_string_to_metric_families(answer)
        if not family.name.endswith("_created")  # prometheus-client's creation timestamps
    }
    # prometheus-client names a counter family without its _total suffix
    served = {name + "_total" if f"{name}_total " in answer else name for name in served}
    assert documented == served


def test_the_json_lines_logging_example_writes_one_object_per_line(tmp_path: Path) -> None:
    (example,) = re.findall(
        r"<!-- doc-test: logging -->\n```python\n(.*?)```", MONITORING.read_text(), re.DOTALL
    )
    script = example + textwrap.dedent(
        f"""
        from flask import Flask
        from flask_verdant import Verdant

        app = Flask("logged")
        Verdant(app, database_file={str(tmp_path / "db.sqlite3")!r}, token_secret={SECRET!r})
        answer = app.test_client().post(
            "/sync", json={{"messages": []}}, headers={{"Authorization": "Bearer nope"}}
        )
        assert answer.status_code == 401
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(lines) == 1
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["logger"] == "flask_verdant"
    assert lines[0]["message"].startswith("Refused sync request (4011)")


def test_the_signal_example_hears_stored_operations(
    app: Flask, replica: Callable[..., VerdantTestClient], caplog: pytest.LogCaptureFixture
) -> None:
    (example,) = re.findall(
        r"<!-- doc-test: signals -->\n```python\n(.*?)```", MONITORING.read_text(), re.DOTALL
    )
    namespace: dict[str, Any] = {"app": app}
    exec(example, namespace)
    ada = replica("ada")
    ada.sync()
    with caplog.at_level("INFO", logger=app.logger.name):
        ada.op(item(ada, "one"), item(ada, "two"))
    assert "ada wrote 2 operations to lib" in caplog.messages
    signals.operations_stored.disconnect(namespace["audit"], app)
