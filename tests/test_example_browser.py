"""The example app in a real browser: two people on one list, in Debian's Chromium.

The page runs the real ``@verdant-web/store`` bundle against the example app served by gunicorn's
gevent worker; ``example_browser/two_users.mjs`` drives Chromium through npm's playwright-core.
Screenshots go to ``test-artifacts/example-browser/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .realtime_helpers import REPO, ServerProcess

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).with_name("example_browser") / "two_users.mjs"
ARTIFACTS = REPO / "test-artifacts" / "example-browser"


def test_two_users_edit_the_same_list_live_and_after_a_reload(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `bash .ci/run` installs it (apt-get install chromium)")
    subprocess.run(["node", "example_app/frontend/build.mjs"], cwd=REPO, check=True)
    server = ServerProcess(
        "gunicorn",
        tmp_path,
        {
            "FLASK_VERDANT_DATABASE_FILE": str(tmp_path / "verdant.sqlite3"),
            "FLASK_FILES_DIRECTORY": str(tmp_path / "files"),
            "FLASK_LISTS_DATABASE": str(tmp_path / "lists.sqlite3"),
        },
    )
    try:
        browser = subprocess.run(
            ["node", str(SCRIPT), f"http://{server.address}", str(ARTIFACTS)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    report = f"{browser.stdout}\n{browser.stderr}\nserver log:\n{server.log()}"
    assert browser.returncode == 0, report
    assert "Traceback" not in server.log(), report
