"""The README's code runs as written: its minimal app, pasted into ``app.py``, serves sync.

Blocks are found by the HTML comment in front of them (``<!-- readme-test: app.py -->`` for the
app, ``<!-- readme-test: message -->`` for a message example), so editing the README's prose
never breaks the test and editing its code always runs it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Flask

from .realtime_helpers import Socket, serving

ROOT = Path(__file__).resolve().parent.parent
_MARKED_BLOCK = re.compile(r"<!-- readme-test: ([\w.]+) -->\n```\w*\n(.*?)```", re.DOTALL)


def readme_blocks(name: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [code for marker, code in _MARKED_BLOCK.findall(text) if marker == name]


def write_readme_app(directory: Path) -> Path:
    """The README's app, as a user would paste it into ``app.py``."""
    blocks = readme_blocks("app.py")
    assert blocks, "the README marks its minimal app"
    path = directory / "app.py"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


EXERCISE = textwrap.dedent(
    """
    import json, sys
    import jwt
    import app as module

    message = json.loads(sys.argv[1])
    client = module.app.test_client()
    refused = client.get("/auth/groceries")
    assert refused.status_code == 401, refused.status_code
    client.post("/login", data={"name": "ada"})
    answer = client.get("/auth/groceries")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    token = answer.get_json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["url"] == "http://localhost/sync", claims
    assert (claims["sub"], claims["lib"]) == ("ada", "groceries"), claims
    presence = {"type": "presence-update", "replicaId": message["replicaId"], "presence": {}}
    synced = client.post(
        "/sync",
        json={"messages": [presence, message]},
        headers={"Authorization": "Bearer " + token},
    )
    assert synced.status_code == 200, synced.get_data(as_text=True)
    replies = synced.get_json()["messages"]
    print(json.dumps(replies))
    """
)


def test_the_readme_app_serves_a_sync_with_its_token(tmp_path: Path) -> None:
    write_readme_app(tmp_path)
    (tmp_path / "exercise.py").write_text(EXERCISE, encoding="utf-8")
    (message,) = readme_blocks("message")
    json.loads(message)  # the README's example is valid JSON
    result = subprocess.run(
        # -W error: PyJWT warns about short HMAC keys; the README's secrets must be long enough.
        [sys.executable, "-W", "error", "exercise.py", message],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = [reply["type"] for reply in replies]
    # over HTTP a new replica is then asked for its full history (docs/protocol.md, R1)
    assert kinds == ["presence-changed", "sync-resp", "need-since"]
    assert replies[0]["userInfo"]["profile"] == {"id": "ada", "name": "Ada"}
    assert replies[1]["overwriteLocalData"] is False


def test_the_readme_secrets_are_at_least_32_bytes() -> None:
    (app_code,) = readme_blocks("app.py")
    secrets = re.findall(r'"(dev-only[^"]*)"', app_code)
    assert len(secrets) == 2
    assert all(len(secret.encode()) >= 32 for secret in secrets)


def test_a_websocket_sends_the_token_as_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``new WebSocket(url, ["Bearer", token])`` and the README's message get a ``sync-resp``."""
    spec = importlib.util.spec_from_file_location("readme_app", write_readme_app(tmp_path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered, so Flask finds the module's folder (and its instance folder) as for app.py.
    monkeypatch.setitem(sys.modules, "readme_app", module)
    spec.loader.exec_module(module)
    app: Flask = module.app
    client = app.test_client()
    client.post("/login", data={"name": "ada"})
    token = client.get("/auth/groceries").get_json()["accessToken"]
    (message,) = readme_blocks("message")
    with serving(app) as address:
        socket = Socket(address, token)
        try:
            assert socket.subprotocol == "Bearer"
            socket.send(json.loads(message))
            (answer,) = socket.receive_until("sync-resp")
        finally:
            socket.close()
    assert answer["overwriteLocalData"] is False
    assert (tmp_path / "instance" / "verdant.sqlite3").exists()
    assert answer["ackedTimestamp"] == json.loads(message)["timestamp"]
