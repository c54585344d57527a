"""What a result was measured on: printed with every table, because ratios depend on the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata


def describe() -> dict[str, str]:
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gib():.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "Node": _command(["node", "--version"]),
        "flask-verdant": _version("flask-verdant"),
        "gunicorn / gevent": f"{_version('gunicorn')} / {_version('gevent')}",
        "load average": load(),
    }


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        kib = int(meminfo.readline().split()[1])
    return kib / 1024 / 1024


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unavailable"
