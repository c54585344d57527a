"""Profile flask-verdant under one benchmark workload with py-spy and print where time goes.

    python -m benchmarks.profile fanout [--storage disk|tmpfs] [--set joins=10] [--top 25]

Starts the server as the runner does (pinned to CPU 0), samples its gunicorn worker with
``py-spy record`` (``pip install py-spy``) while the workload runs on CPU 1, then prints the
functions with the most samples on top of the stack (self) and anywhere in it (inclusive).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import servers
from .plan import FULL, STORAGES, Step
from .run import run_workload


def top_functions(stacks: str, limit: int) -> str:
    """Self and inclusive shares of the samples in py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        if not frames_text:
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in frames_text.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in own.most_common(limit)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in inclusive.most_common(limit)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``fn (path/to/site-packages/pkg/mod.py:12)`` -> ``fn (pkg/mod.py)``: lines apart merge."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def main(argv: list[str] | None = None) -> int:
    steps = {step.key: step for step in FULL}
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("step", choices=sorted(steps))
    parser.add_argument("--storage", choices=sorted(STORAGES), default="disk")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--set", action="append", default=[], help="a workload option: name=N")
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--raw", help="also keep py-spy's collapsed stacks in this file")
    args = parser.parse_args(argv)
    step = steps[args.step]
    options = dict(step.options)
    for setting in args.set:
        name, _, value = setting.partition("=")
        options[name] = int(value)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    with tempfile.TemporaryDirectory(dir=STORAGES[args.storage]) as directory:
        root = Path(directory)
        server = servers.start("flask", root / "db.sqlite3", 0, root / "server.log")
        stacks = root / "stacks.txt"
        record = ["record", "--pid", str(server.pid), "--rate", str(args.rate), "--nonblocking"]
        sampler = subprocess.Popen(
            [py_spy, *record, "--format", "raw", "--output", str(stacks)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1)
            result = run_workload(server, Step(step.key, step.workload, options), 1)
        finally:
            sampler.send_signal(2)
            sampler.wait(30)
            server.stop()
        text = stacks.read_text()
        if args.raw:
            Path(args.raw).write_text(text)
    print({k: v for k, v in result.items() if k not in ("received", "delivery")})
    print(top_functions(text, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
