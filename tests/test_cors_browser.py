"""CORS as a browser enforces it: Chromium runs a page on one origin against the sync server on
another (``cors_browser/cross_origin.mjs``, driven through npm's playwright-core)."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask

from flask_verdant import LocalFileStorage, TokenProvider

from .helpers import SECRET
from .realtime_helpers import REPO, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).with_name("cors_browser") / "cross_origin.mjs"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """The page server's requests are not what the test is about."""


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on its own port: the front end's origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_page_on_another_origin_syncs_long_polls_and_uploads(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `bash .ci/run` installs it (apt-get install chromium)")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>front end</title>", encoding="utf-8")
    with static_site(site) as page_origin:
        allowed_app = make_app(
            {"VERDANT_CORS_ORIGINS": page_origin},
            file_storage=LocalFileStorage(tmp_path / "files"),
        )
        closed_app = make_app(database_file=str(tmp_path / "closed.sqlite3"))
        with serving(allowed_app) as allowed, serving(closed_app) as closed:
            token = TokenProvider(SECRET).get_token(
                library_id="lib", user_id="ada", sync_endpoint=f"http://{allowed}/sync"
            )
            setup = {"allowed": f"http://{allowed}", "closed": f"http://{closed}", "token": token}
            browser = subprocess.run(
                ["node", str(SCRIPT), f"{page_origin}/index.html", json.dumps(setup)],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
    assert browser.returncode == 0, browser.stderr
    seen = json.loads(browser.stdout.strip().splitlines()[-1])
    assert seen["origin"] == page_origin
    assert seen["poll"] == {"status": 200, "preferenceApplied": "wait=1", "body": {"messages": []}}
    assert seen["refused"]["status"] == 401
    assert seen["refused"]["body"]["code"] == 4011
    assert seen["upload"] == 200
    assert seen["info"]["name"] == "note.txt"
    assert seen["download"] == "cross-origin bytes"
    assert seen["closed"] == "blocked: TypeError"
    assert seen["errors"] == []
