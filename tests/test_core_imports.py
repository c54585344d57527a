"""The protocol core is plain Python: importable where Flask, Werkzeug and gevent are not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CORE = [
    "flask_verdant.engine",
    "flask_verdant.storage",
    "flask_verdant.presence",
    "flask_verdant.broker",
    "flask_verdant.coordination",
    "flask_verdant.hub",
    "flask_verdant.hosts",
    "flask_verdant.messages",
    "flask_verdant.compaction",
    "flask_verdant.patches",
]


def test_the_core_imports_without_flask_werkzeug_or_gevent() -> None:
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("flask", "werkzeug", "gevent", "flask_sock"):
                    raise ImportError("the core imported " + name)
                return None

        sys.meta_path.insert(0, Refuse())
        for module in {CORE!r}:
            importlib.import_module(module)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
