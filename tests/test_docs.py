"""The repository documents the protocol it implements, and code cites only that document."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
# References to documents that live outside the repository (numbered sections of another
# project's specification, or its notes), which a reader of the code cannot open.
OUTSIDE_CITATION = re.compile(r"shared/spec|pull-client-race\.md|\bspec \d|§\s*\d")


def _sources() -> list[Path]:
    found: list[Path] = []
    for folder in ("flask_verdant", "tests", "benchmarks", "example_app"):
        for path in (ROOT / folder).rglob("*"):
            if "node_modules" in path.parts or path.suffix not in (".py", ".mjs", ".js"):
                continue
            if path.name == "test_docs.py" or "static" in path.parts:
                continue
            found.append(path)
    return found


def test_code_cites_only_documents_in_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_CITATION.search(line)
    ]
    assert offenders == []


def test_cited_protocol_sections_exist() -> None:
    headings = {
        line.lstrip("#").strip()
        for line in PROTOCOL.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    cited = set()
    for path in _sources():
        for match in re.finditer(r'docs/protocol\.md,? \(?"([^"\n]+)"', path.read_text("utf-8")):
            cited.add(match.group(1))
    assert cited, "the code cites docs/protocol.md by section name"
    missing = sorted(name for name in cited if name not in headings)
    assert missing == []


def test_protocol_document_covers_the_protocol() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    for heading in (
        "## Tokens",
        "### HTTP push/pull",
        "### Long-poll",
        "### Websocket",
        "### Files",
        "## Messages",
        "## Ordering",
        "## The global ack",
        "## Compaction",
        "## Pull clients and early edits (R1-R7)",
        "## Eviction",
        "## Presence",
        "## Errors and close codes",
        "## Differences from the official server",
        "## Store 5.x",
    ):
        assert heading in text
    for rule in ("R1", "R2", "R3", "R4", "R5", "R6", "R7"):
        assert f"**{rule}**" in text


def test_relative_links_between_documents_resolve() -> None:
    broken = []
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+?\.md)(?:#[^)]*)?\)", document.read_text("utf-8")):
            if not (document.parent / target).exists():
                broken.append(f"{document.name} -> {target}")
    assert broken == []
